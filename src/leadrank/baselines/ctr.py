"""The paper's six CTR models (Table 1) with deepctr-torch: Wide&Deep, DeepFM, xDeepFM, DCN, DCN-M, AutoInt.

deepctr-torch is imported only when a model is built: importing it starts a background
check for a newer release on PyPI (it prints "Please check the latest version manually"
when offline), which ``import leadrank`` should not do.

Training uses deepctr's networks, their regularisation terms and its loss (summed binary
cross-entropy, Adam), with our own short loop instead of ``BaseModel.fit`` so that an epoch
can be scored on a time-ordered validation slice and the best epoch kept; deepctr's ``fit``
can only stop, not roll back, and prints to stdout.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadrank.baselines._columns import check_feature_spec, check_named_input, require_columns
from leadrank.config import TIME_COLUMN, FeatureSpec, FunnelSpec
from leadrank.data.schema import label_values
from leadrank.data.split import validation_slice
from leadrank.encoding import TabularEncoder


@dataclass(frozen=True)
class _ModelInfo:
    cls: str  # class name in deepctr_torch.models
    display: str  # the paper's name


#: Accepted ``model`` values, the deepctr-torch class and the paper's name of each.
MODELS: Mapping[str, _ModelInfo] = MappingProxyType(
    {
        "wdl": _ModelInfo("WDL", "Wide&Deep"),
        "deepfm": _ModelInfo("DeepFM", "DeepFM"),
        "xdeepfm": _ModelInfo("xDeepFM", "xDeepFM"),
        "dcn": _ModelInfo("DCN", "DCN"),
        "dcnmix": _ModelInfo("DCNMix", "DCN-M"),
        "autoint": _ModelInfo("AutoInt", "AutoInt"),
    }
)

# What a practitioner tries second, after the paper's settings (batch 256, dim 8, deepctr's
# default architecture, Adam 1e-3): wider embeddings, dropout and a stronger embedding L2
# against overfitting the small positive class, a lower learning rate with more patience,
# and for the models with an interaction block one change to it.
_TUNED_COMMON: Mapping[str, Any] = MappingProxyType(
    {"embedding_dim": 16, "dnn_dropout": 0.2, "l2_reg_embedding": 1e-4, "lr": 5e-4, "epochs": 30, "patience": 4}
)

#: One tuned variant per model: keyword arguments of :class:`CTRBaseline` that replace the
#: defaults. Common to all six: ``embedding_dim`` 8 -> 16, ``dnn_dropout`` 0 -> 0.2,
#: ``l2_reg_embedding`` 1e-5 -> 1e-4, ``lr`` 1e-3 -> 5e-4, ``epochs`` 20 -> 30, ``patience``
#: 2 -> 4. Per model: xDeepFM's CIN (256, 128) -> (128, 128); DCN and DCN-M 2 -> 3 cross
#: layers; AutoInt 3 -> 2 attention layers with 4 heads instead of 2. Batch size stays 256.
TUNED: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "wdl": MappingProxyType({**_TUNED_COMMON}),
        "deepfm": MappingProxyType({**_TUNED_COMMON}),
        "xdeepfm": MappingProxyType({**_TUNED_COMMON, "model_options": {"cin_layer_size": (128, 128)}}),
        "dcn": MappingProxyType({**_TUNED_COMMON, "model_options": {"cross_num": 3}}),
        "dcnmix": MappingProxyType({**_TUNED_COMMON, "model_options": {"cross_num": 3}}),
        "autoint": MappingProxyType({**_TUNED_COMMON, "model_options": {"att_layer_num": 2, "att_head_num": 4}}),
    }
)

_EXTRA_NAME = "extra"
_PREDICT_BATCH = 8192


class _Inputs:
    """Table (+ extra array) -> one float matrix in deepctr's input layout.

    Categorical columns become indices into an embedding: 0 for a missing or unseen value,
    1.. for the categories seen in training. Numeric and yes/no columns, the ``extra_dense``
    columns and the columns of the ``extra`` array are standardised with the training mean
    and standard deviation, a gap becoming 0 (the mean); a numeric or yes/no column with gaps
    in training also gets a 0/1 missing-indicator input. Inputs get short safe names
    (``s0``, ``d0``, ``m0``, ``extra``), so any column name works.
    """

    def __init__(self, features: FeatureSpec, extra_dense: Sequence[str], table: pd.DataFrame, extra: np.ndarray | None) -> None:
        self.features = features
        self.extra_dense = list(extra_dense)
        self.encoder = TabularEncoder(features).fit(table)
        self.sparse = [(f.name, len(self.encoder.categories_[f.name]) + 1) for f in features.features if f.kind == "categorical"]
        dense_names = [f.name for f in features.features if f.kind != "categorical"] + self.extra_dense
        values = self._dense_values(table, self.encoder.transform(table))
        self.dense = []  # (column, mean, std, has_indicator)
        for name in dense_names:
            column = values[name]
            mean, std = _mean_std(column)
            self.dense.append((name, mean, std, bool(np.isnan(column).any())))
        self.extra_width = None if extra is None else extra.shape[1]
        if extra is not None:
            self.extra_mean, self.extra_std = zip(*(_mean_std(extra[:, j]) for j in range(extra.shape[1])), strict=True)

    def feature_columns(self, embedding_dim: int) -> list:
        _import_deepctr_offline()
        from deepctr_torch.inputs import DenseFeat, SparseFeat

        columns: list = [SparseFeat(f"s{i}", vocab, embedding_dim=embedding_dim) for i, (_, vocab) in enumerate(self.sparse)]
        for i, (_, _, _, indicator) in enumerate(self.dense):
            columns.append(DenseFeat(f"d{i}", 1))
            if indicator:
                columns.append(DenseFeat(f"m{i}", 1))
        if self.extra_width is not None:
            columns.append(DenseFeat(_EXTRA_NAME, self.extra_width))
        return columns

    def matrix(self, table: pd.DataFrame, extra: np.ndarray | None, feature_index: Mapping[str, tuple[int, int]]) -> np.ndarray:
        encoded = self.encoder.transform(table)
        values = self._dense_values(table, encoded)
        width = max(end for _, end in feature_index.values())
        out = np.zeros((len(table), width), dtype=np.float32)
        for i, (name, _) in enumerate(self.sparse):
            start, _ = feature_index[f"s{i}"]
            out[:, start] = encoded[name].cat.codes.to_numpy() + 1  # code -1 (missing/unseen) -> 0
        for i, (name, mean, std, indicator) in enumerate(self.dense):
            column = values[name]
            start, _ = feature_index[f"d{i}"]
            out[:, start] = np.nan_to_num((column - mean) / std, nan=0.0)
            if indicator:
                out[:, feature_index[f"m{i}"][0]] = np.isnan(column)
        if self.extra_width is not None:
            start, end = feature_index[_EXTRA_NAME]
            out[:, start:end] = np.nan_to_num((extra - np.array(self.extra_mean)) / np.array(self.extra_std), nan=0.0)
        return out

    def _dense_values(self, table: pd.DataFrame, encoded: pd.DataFrame) -> dict[str, np.ndarray]:
        values = {f.name: encoded[f.name].to_numpy(dtype=float) for f in self.features.features if f.kind != "categorical"}
        for name in self.extra_dense:
            try:
                values[name] = pd.to_numeric(table[name]).astype(float).to_numpy()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"extra_dense column {name!r} must hold numbers ({exc}); pass numeric columns only.") from None
        return values


def _mean_std(column: np.ndarray) -> tuple[float, float]:
    finite = column[np.isfinite(column)]
    if len(finite) == 0:
        return 0.0, 1.0
    std = float(finite.std())
    return float(finite.mean()), std if std > 0 else 1.0


class CTRBaseline:
    """One of the paper's CTR models on the FeatureSpec's tabular columns.

    Categorical columns are sparse features (an embedding of ``embedding_dim`` per column,
    index 0 for a missing or unseen value), numeric and yes/no columns dense features
    (standardised; a column with gaps in training also gets a missing indicator); see
    :class:`_Inputs`. The dialogue is not read; text enters only through ``extra``.

    **Early stopping.** :meth:`fit` holds out the most recent ``validation_fraction`` of the
    training table by ``as_of`` (:func:`leadrank.data.split.validation_slice`), trains on the
    rest for at most ``epochs`` epochs, scores the slice's AUC after each one, stops after
    ``patience`` epochs without improvement and keeps the best epoch's weights (fitted on
    the earlier rows only; the model is not refitted on everything). With
    ``validation_fraction=None``, or when the slice holds one class only (a warning says
    so), it trains on the whole table for exactly ``epochs`` epochs. On 35k training leads
    (default preset, 1.4 % positives) xDeepFM, the slowest of the six, took 29 s on one busy
    CPU thread (~7 s an epoch, stopped after 4); 20 epochs are the worst case.

    **Determinism.** For a fixed ``seed`` the scores are identical run to run on the same
    machine: ``torch.manual_seed(seed)`` (and deepctr's ``seed``) fix the initialisation and
    dropout, a ``torch.Generator`` seeded with ``seed`` fixes the batch order, all inside
    ``torch.random.fork_rng`` so the global torch RNG is left as it was. Everything runs on
    the CPU.

    Args:
        features: The columns to read.
        model: ``'wdl'``, ``'deepfm'``, ``'xdeepfm'``, ``'dcn'``, ``'dcnmix'`` or ``'autoint'``.
        funnel: The funnel whose label column is the 0/1 outcome (read by :meth:`fit` only) and
            whose stage and rule columns are refused as ``extra_dense`` inputs (default: the paper's).
        embedding_dim: Embedding size of every sparse feature (paper: 8).
        batch_size: Mini-batch size (paper: 256).
        epochs: Most epochs to train (exactly this many without validation).
        patience: Epochs without a better validation AUC before stopping.
        validation_fraction: Most recent share of the training table used for early stopping, or None.
        lr: Adam learning rate.
        dnn_hidden_units: Hidden layer sizes of the deep part; None keeps deepctr's default for the model.
        dnn_dropout: Dropout in the deep part.
        l2_reg_embedding: L2 on the embeddings (deepctr's default 1e-5).
        model_options: Further keyword arguments of the deepctr model class (``cross_num``, ``cin_layer_size``, ...).
        extra_dense: Names of further numeric table columns to read as dense inputs (e.g. a
            stored text embedding ``emb_0``.. ``emb_63``); never outcome columns.
        seed: Seeds initialisation, batch order and dropout.
        label: The name to report instead of the paper's model name (e.g. ``'DeepFM + asLLR embedding'``).

    Example:
        >>> model = CTRBaseline(FeatureSpec.nev_default(), "dcnmix", epochs=5)  # doctest: +SKIP
        >>> scores = model.fit(train).predict(test)  # doctest: +SKIP
        >>> hybrid = CTRBaseline(spec, "deepfm").fit(train, extra=h_train)  # doctest: +SKIP
        >>> hybrid.predict(test, extra=h_test)  # doctest: +SKIP

    Attributes:
        network_: The trained deepctr-torch module.
        history_: Validation AUC after each epoch (empty without validation).
        best_epoch_: The epoch (1-based) whose weights were kept.
    """

    def __init__(
        self,
        features: FeatureSpec,
        model: str = "deepfm",
        *,
        funnel: FunnelSpec | None = None,
        embedding_dim: int = 8,
        batch_size: int = 256,
        epochs: int = 20,
        patience: int = 2,
        validation_fraction: float | None = 0.1,
        lr: float = 1e-3,
        dnn_hidden_units: Sequence[int] | None = None,
        dnn_dropout: float = 0.0,
        l2_reg_embedding: float = 1e-5,
        model_options: Mapping[str, Any] | None = None,
        extra_dense: Sequence[str] = (),
        seed: int = 0,
        label: str | None = None,
    ) -> None:
        self.features = features
        self.model = model
        self.funnel = funnel
        self.embedding_dim = embedding_dim
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.lr = lr
        self.dnn_hidden_units = dnn_hidden_units
        self.dnn_dropout = dnn_dropout
        self.l2_reg_embedding = l2_reg_embedding
        self.model_options = model_options
        self.extra_dense = extra_dense
        self.seed = seed
        self.label = label

    @property
    def label_column(self) -> str:
        """The 0/1 outcome column: the funnel's (default: the paper's)."""
        return (self.funnel or FunnelSpec.paper_default()).label_column

    @classmethod
    def tuned(cls, features: FeatureSpec, model: str = "deepfm", **overrides: Any) -> CTRBaseline:
        """The :data:`TUNED` variant of ``model``, named e.g. ``'DeepFM (tuned)'``; ``overrides`` win."""
        if model not in TUNED:
            raise ValueError(f"model must be one of {sorted(MODELS)}; got {model!r}")
        display = MODELS[model].display
        options = {**TUNED[model], "label": f"{display} (tuned)", **overrides}
        return cls(features, model, **options)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        info = MODELS.get(self.model)
        return info.display if info else str(self.model)

    # -- fitting -------------------------------------------------------------------------

    def _input_spec(self) -> FeatureSpec:
        """The FeatureSpec the network reads (subclasses may add a column)."""
        return self.features

    def fit(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> CTRBaseline:
        """Train on ``table``; ``extra`` (rows x k, row-aligned with ``table``) adds k dense inputs."""
        import torch

        spec = self._input_spec()
        self._check_arguments(spec)
        needed = [*spec.names, *self.extra_dense, self.label_column]
        if self.validation_fraction is not None:
            needed.append(TIME_COLUMN)
        require_columns(table, needed, who=self.name)
        if not spec.features and not self.extra_dense and extra is None:
            raise ValueError("the FeatureSpec lists no features and no extra inputs were given; a CTR model needs at least one")
        extra = _check_extra(extra, table, fitted_width=None)
        labels = label_values(table[self.label_column])
        if len(np.unique(labels)) < 2:
            raise ValueError(
                f"{self.label_column!r} holds one class only ({labels[0] if len(labels) else 'no rows'}); a CTR model needs both 0 and 1"
            )

        self.inputs_ = _Inputs(spec, self.extra_dense, table, extra)
        train_rows, valid_rows = self._validation_rows(table, labels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            network = self._build(spec)
            matrix = torch.from_numpy(self.inputs_.matrix(table, extra, network.feature_index))
            targets = torch.from_numpy(labels.astype(np.float32))
            self.history_, self.best_epoch_ = self._train(network, matrix, targets, train_rows, valid_rows)
        self.network_ = network
        return self

    def _check_arguments(self, spec: FeatureSpec) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}; got {self.model!r}")
        check_feature_spec(spec, outcomes=(self.funnel or FunnelSpec.paper_default()).supervision_columns, who=self.name)
        for name, value in (
            ("embedding_dim", self.embedding_dim),
            ("batch_size", self.batch_size),
            ("epochs", self.epochs),
            ("patience", self.patience),
        ):
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr!r}")
        if not 0.0 <= self.dnn_dropout < 1.0:
            raise ValueError(f"dnn_dropout must be in [0, 1); got {self.dnn_dropout!r}")
        if self.validation_fraction is not None and not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be strictly between 0 and 1, or None; got {self.validation_fraction!r}")
        if isinstance(self.extra_dense, str):
            raise ValueError(f"extra_dense must be a list of column names; got the string {self.extra_dense!r}")
        for name in self.extra_dense:
            check_named_input(name, argument="extra_dense", funnel=self.funnel or FunnelSpec.paper_default())
            if name in spec.names:
                raise ValueError(f"extra_dense column {name!r} is already a FeatureSpec feature; list it once")
        if spec.dialogue_column and spec.dialogue_column in self.extra_dense:
            raise ValueError(f"extra_dense column {spec.dialogue_column!r} is the dialogue (text); pass its embedding via extra=")

    def _validation_rows(self, table: pd.DataFrame, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        everything = np.arange(len(table))
        if self.validation_fraction is None:
            return everything, None
        positions = pd.DataFrame({TIME_COLUMN: table[TIME_COLUMN].to_numpy(), "row": everything})
        cut = validation_slice(positions, self.validation_fraction)
        train_rows, valid_rows = np.array(cut.train["row"], dtype=np.int64), np.array(cut.test["row"], dtype=np.int64)
        if len(np.unique(labels[valid_rows])) < 2 or len(np.unique(labels[train_rows])) < 2:
            warnings.warn(
                f"{self.name}: the most recent {self.validation_fraction:.0%} of the training table "
                f"({len(valid_rows)} rows) or the rest holds one class only, so there is no validation AUC; "
                f"training on all {len(table)} rows for {self.epochs} epochs instead.",
                stacklevel=3,
            )
            return everything, None
        return train_rows, valid_rows

    def _build(self, spec: FeatureSpec):
        _import_deepctr_offline()
        from deepctr_torch import models

        columns = self.inputs_.feature_columns(self.embedding_dim)
        options: dict[str, Any] = {
            "l2_reg_embedding": self.l2_reg_embedding,
            "dnn_dropout": self.dnn_dropout,
            "seed": self.seed,
            "task": "binary",
            "device": "cpu",
        }
        if self.dnn_hidden_units is not None:
            options["dnn_hidden_units"] = tuple(self.dnn_hidden_units)
        options.update(self.model_options or {})
        model_class = getattr(models, MODELS[self.model].cls)
        try:
            return model_class(columns, columns, **options)
        except TypeError as exc:
            raise ValueError(f"{MODELS[self.model].cls} does not accept these options ({exc}); check model_options.") from None
        except ValueError as exc:
            raise ValueError(f"{MODELS[self.model].cls} cannot be built on these inputs: {exc}") from None

    def _train(self, network, matrix, targets, train_rows: np.ndarray, valid_rows: np.ndarray | None) -> tuple[list[float], int]:
        import torch
        import torch.nn.functional as F

        optimiser = torch.optim.Adam(network.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        train_index = torch.as_tensor(np.array(train_rows, dtype=np.int64))
        history: list[float] = []
        best_auc, best_epoch, best_state = -math.inf, self.epochs, None
        for epoch in range(1, self.epochs + 1):
            network.train()
            order = train_index[torch.randperm(len(train_index), generator=generator)]
            for batch in _batches(order, self.batch_size):
                predicted = network(matrix[batch]).squeeze(-1)
                loss = F.binary_cross_entropy(predicted, targets[batch], reduction="sum")
                total = loss + network.get_regularization_loss() + network.aux_loss
                optimiser.zero_grad()
                total.backward()
                optimiser.step()
            if valid_rows is None:
                continue
            valid_index = torch.as_tensor(valid_rows)
            auc = float(roc_auc_score(targets[valid_index].numpy(), _forward(network, matrix[valid_index])))
            history.append(auc)
            if auc > best_auc:
                best_auc, best_epoch, best_state = auc, epoch, copy.deepcopy(network.state_dict())
            elif epoch - best_epoch >= self.patience:
                break
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        return history, best_epoch

    # -- scoring -------------------------------------------------------------------------

    def predict(self, table: pd.DataFrame, *, extra: np.ndarray | None = None) -> np.ndarray:
        """Probability of conversion per row; pass ``extra`` exactly when :meth:`fit` had it."""
        import torch

        if not hasattr(self, "network_"):
            raise ValueError(f"{self.name} is not fitted yet; call fit(train_table) first")
        require_columns(table, [*self.inputs_.features.names, *self.extra_dense], who=self.name)
        extra = _check_extra(extra, table, fitted_width=self.inputs_.extra_width, predicting=True)
        matrix = torch.from_numpy(self.inputs_.matrix(table, extra, self.network_.feature_index))
        return _forward(self.network_, matrix)


def _batches(order, size: int) -> list:
    """``order`` in consecutive batches of ``size``; a last batch of one row joins the one before.

    deepctr's DCN-M (``CrossNetMix.forward`` ends in ``x_l.squeeze()``) drops the batch
    dimension of a one-row batch and then fails to concatenate its parts.
    """
    starts = list(range(0, len(order), size))
    if len(starts) > 1 and len(order) - starts[-1] == 1:
        starts.pop()
    ends = [*starts[1:], len(order)]
    return [order[start:end] for start, end in zip(starts, ends, strict=True)]


def _forward(network, matrix) -> np.ndarray:
    import torch

    network.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, len(matrix), _PREDICT_BATCH):
            chunk = matrix[start : start + _PREDICT_BATCH]
            if len(chunk) == 1:  # a one-row batch breaks DCN-M (see _batches); in eval mode rows are scored independently
                parts.append(network(chunk.repeat(2, 1)).squeeze(-1)[:1])
            else:
                parts.append(network(chunk).squeeze(-1))
    return torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros(0)


def _import_deepctr_offline() -> None:
    """Import deepctr_torch without its version check, which asks PyPI in a thread on import."""
    if "deepctr_torch" in sys.modules:
        return
    before = set(threading.enumerate())
    with mock.patch("requests.get", return_value=SimpleNamespace(status_code=None)):  # "not ok": nothing said
        import deepctr_torch  # noqa: F401

        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=5)


def _check_extra(extra: np.ndarray | None, table: pd.DataFrame, *, fitted_width: int | None, predicting: bool = False) -> np.ndarray | None:
    """``extra`` as a float 2-D array row-aligned with ``table``, consistent with what fit saw."""
    if extra is None:
        if predicting and fitted_width is not None:
            raise ValueError(
                f"the model was fitted with extra inputs of width {fitted_width}; pass extra= (rows x {fitted_width}) to predict too"
            )
        return None
    if predicting and fitted_width is None:
        raise ValueError("the model was fitted without extra inputs; predict got extra=. Fit with extra= to use them")
    array = np.asarray(extra, dtype=float)
    if array.ndim != 2:
        raise ValueError(
            f"extra must be a 2-D array (rows x k); got shape {array.shape}. Reshape a single column with extra.reshape(-1, 1)"
        )
    if array.shape[0] != len(table):
        raise ValueError(
            f"extra has {array.shape[0]} rows but the table has {len(table)}; pass one row of extra per table row, in table order"
        )
    if fitted_width is not None and array.shape[1] != fitted_width:
        raise ValueError(
            f"extra has {array.shape[1]} columns but the model was fitted with {fitted_width}; pass the same kind of inputs as in fit"
        )
    if array.shape[1] == 0:
        raise ValueError("extra has 0 columns; pass None for no extra inputs")
    if np.isinf(array).any():
        raise ValueError(
            f"extra holds infinite values in {int(np.isinf(array).any(axis=1).sum())} row(s); pass finite numbers (NaN means missing)"
        )
    return array
