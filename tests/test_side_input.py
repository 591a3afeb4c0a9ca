"""Tabular-aware heads: the side input, the dialogue-only reading and leads with no text to read.

leadrank.encoding.SideEncoder, leadrank.model.asllr (ScoringHeads, ASLLR), leadrank.training,
leadrank.artifact (save/load, choose_rank_by) and leadrank.inference (Scorer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose

from helpers import TINY_TRAIN, reset_accelerate
from leadrank.artifact import choose_rank_by, from_training, load, save
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.synth import SynthConfig, simulate
from leadrank.encoding import SideEncoder
from leadrank.inference import Scorer
from leadrank.model.asllr import ASLLR, ScoringHeads
from leadrank.settings import ModelConfig, ScoreConfig, TrainConfig
from leadrank.training import train

FEATURES = FeatureSpec.nev_default()
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")
SIDE_MODEL = {
    "backbone": "tiny",
    "mode": "frozen",
    "pooling": "mean",
    "pool_layer": 1,
    "max_dialogue_tokens": 32,
    "reading": "dialogue",
    "side_input": True,
}

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=240, seed=3))


def _train(table: pd.DataFrame, features: FeatureSpec = FEATURES, **model: object):
    model_config = ModelConfig(**{**SIDE_MODEL, **model})
    train_config = TrainConfig(**TINY_TRAIN)
    reset_accelerate()
    result = train(table, features, FUNNEL, model_config, train_config)
    reset_accelerate()
    return from_training(result)


class TestSideEncoder:
    def test_columns_scale_and_unseen_categories(self) -> None:
        spec = FeatureSpec(
            features=[{"name": "visits", "kind": "numeric"}, {"name": "city", "kind": "categorical"}, {"name": "app", "kind": "bool"}]
        )
        train_part = pd.DataFrame({"visits": [1.0, 3.0, None, 4.0], "city": ["a", "b", "a", "a"], "app": ["yes", "no", "yes", None]})
        encoder = SideEncoder(spec).fit(train_part)
        assert encoder.column_names == ["visits", "visits=missing", "city=a", "city=b", "app", "app=missing"]
        encoded = encoder.transform(train_part)
        assert encoded.dtype == np.float32 and encoded.shape == (4, 6)
        assert_allclose(encoded[:, 0].mean(), 0.0, atol=1e-6)  # standardised on the training part (gaps = median)
        assert encoded[:, 1].tolist() == [0, 0, 1, 0]
        unseen = encoder.transform(pd.DataFrame({"visits": [2.0], "city": ["z"], "app": ["yes"]}))
        assert unseen[0, 2:4].tolist() == [0.0, 0.0]  # a category first seen later: all zeros

    def test_round_trip_through_json_is_identical(self, table: pd.DataFrame) -> None:
        encoder = SideEncoder(FEATURES).fit(table)
        again = SideEncoder.from_dict(FEATURES, encoder.to_dict())
        assert again.column_names == encoder.column_names
        assert np.array_equal(again.transform(table), encoder.transform(table))

    def test_a_state_for_other_columns_is_refused(self, table: pd.DataFrame) -> None:
        state = SideEncoder(FEATURES).fit(table).to_dict()
        other = FeatureSpec(features=[{"name": "customer_age", "kind": "numeric"}])
        with pytest.raises(ValueError, match="same training run"):
            SideEncoder.from_dict(other, state)


class TestHeads:
    def test_the_side_input_changes_the_output(self) -> None:
        torch.manual_seed(0)
        heads = ScoringHeads(8, side_width=3, dropout=0.0).eval()
        pooled = torch.randn(4, 8)
        a = heads(pooled, torch.zeros(4, 3))
        b = heads(pooled, torch.ones(4, 3))
        assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])

    def test_a_lead_without_text_reads_the_learned_no_text_vector(self) -> None:
        heads = ScoringHeads(8, side_width=2, dropout=0.0).eval()
        side = torch.ones(2, 2)
        with torch.no_grad():
            heads.no_text.copy_(torch.arange(8.0))
        garbage = torch.randn(2, 8) * 100
        out = heads(garbage, side, torch.tensor([False, False]))
        expected = heads(torch.arange(8.0).expand(2, 8), side)
        assert torch.allclose(out[0], expected[0]) and torch.allclose(out[1], expected[1])

    def test_a_missing_or_wrong_side_input_is_refused(self) -> None:
        heads = ScoringHeads(8, side_width=3)
        with pytest.raises(ValueError, match="side input of width 3"):
            heads(torch.randn(2, 8))
        with pytest.raises(ValueError, match="side input of width 3"):
            heads(torch.randn(2, 8), torch.randn(2, 5))

    def test_dialogue_reading_without_side_input_is_refused(self) -> None:
        with pytest.raises(ValueError, match="set side_input: true"):
            ModelConfig(reading="dialogue")


class TestTrainAndScore:
    def test_side_input_is_saved_and_loaded_identically(self, table: pd.DataFrame, tmp_path: Path) -> None:
        artifact = _train(table)
        assert artifact.side_encoder is not None and artifact.model.heads.side_width == artifact.side_encoder.width
        before = Scorer(artifact, EXACT).score(table)
        folder = save(artifact, tmp_path / "model")
        loaded = load(folder)
        assert loaded.side_encoder.to_dict() == artifact.side_encoder.to_dict()
        after = Scorer(loaded, EXACT).score(table)
        assert_allclose(after["probability"], before["probability"], rtol=0, atol=1e-6)
        assert_allclose(after["rank_score"], before["rank_score"], rtol=0, atol=1e-6)

    def test_a_changed_field_changes_the_score_though_the_prompt_is_the_same(self, table: pd.DataFrame) -> None:
        artifact = _train(table)
        scorer = Scorer(artifact, EXACT)
        lead = table.iloc[[0]].copy()
        changed = lead.assign(customer_age=lead["customer_age"] + 30)
        assert scorer.inputs(lead).prompts == scorer.inputs(changed).prompts  # the dialogue-only prompt has no fields
        assert scorer.inputs(lead).keys() != scorer.inputs(changed).keys()  # but the score cache key does
        assert not np.allclose(scorer.raw_scores(lead)[0], scorer.raw_scores(changed)[0])

    def test_a_table_without_dialogue_trains_and_scores_with_no_backbone_forward(
        self, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        features = FEATURES.model_copy(update={"dialogue_column": None})
        plain = table.drop(columns=["dialogue"])

        def no_forward(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            raise AssertionError("the language model ran for a table without text")

        monkeypatch.setattr(ASLLR, "encode", no_forward)
        artifact = _train(plain, features)
        scores = Scorer(artifact, EXACT).score(plain)
        assert len(scores) == len(plain) and np.isfinite(scores["rank_score"]).all()
        assert scores["rank_score"].nunique() > 1  # the side input still ranks the leads

    def test_only_leads_with_dialogue_are_read(self, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
        artifact = _train(table)
        scorer = Scorer(artifact, EXACT)
        mixed = table.head(20).copy()
        mixed.loc[mixed.index[:7], "dialogue"] = ""
        read_rows = []
        original = ASLLR.encode

        def counting(self, input_ids, attention_mask):  # noqa: ANN001
            read_rows.append(int(input_ids.shape[0]))
            return original(self, input_ids, attention_mask)

        monkeypatch.setattr(ASLLR, "encode", counting)
        scores = scorer.score(mixed)
        prompts = [p for p in scorer.inputs(mixed).prompts if p]
        assert len(prompts) == int((mixed["dialogue"].fillna("").str.strip() != "").sum()) < 20 - 6
        assert sum(read_rows) == len(set(prompts))  # each distinct prompt read once
        assert len(scores) == 20

    def test_lora_mode_reads_only_leads_with_text(self, table: pd.DataFrame) -> None:
        artifact = _train(table, mode="lora", pooling="last", pool_layer=-1, lora_r=4)
        scores = Scorer(artifact, EXACT).score(table.assign(dialogue=""))
        assert np.isfinite(scores["rank_score"]).all()
        with pytest.raises(ValueError, match="needs a frozen model"):
            Scorer(artifact, EXACT, reading_cache=True)


class TestRankByChoice:
    def test_the_best_validation_auc_wins(self) -> None:
        assert choose_rank_by({"val_auc_point": 0.858, "val_auc_pair": 0.836, "val_auc_blend": 0.854}) == "point"
        assert choose_rank_by({"val_auc_point": 0.7, "val_auc_pair": 0.8, "val_auc_blend": 0.75}) == "pair"

    def test_ties_go_to_the_blend_and_one_class_slices_too(self) -> None:
        assert choose_rank_by({"val_auc_point": 0.8, "val_auc_pair": 0.8, "val_auc_blend": 0.8}) == "blend"
        assert choose_rank_by({}) == "blend"

    def test_a_model_without_hpro_ranks_by_its_probability(self, table: pd.DataFrame) -> None:
        model_config = ModelConfig(**SIDE_MODEL)
        train_config = TrainConfig(**{**TINY_TRAIN, "hpro_weight": 0.0})
        reset_accelerate()
        result = train(table, FEATURES, FUNNEL, model_config, train_config)
        reset_accelerate()
        assert from_training(result).rank_by == "point"


class TestPromptFromConfig:
    def test_the_question_comes_from_the_run_config(self, table: pd.DataFrame, tmp_path: Path) -> None:
        from leadrank.settings import RunConfig

        config = tmp_path / "run.yaml"
        config.write_text(
            "model:\n"
            "  prompt:\n"
            "    instruction: You are a letting agent.\n"
            "    question: Will this tenant sign a lease? Answer Yes or No.\n",
            encoding="utf-8",
        )
        run = RunConfig.resolve("cpu-quick", config, model={"backbone": "tiny", "pool_layer": 1})
        assert run.model.prompt.question == "Will this tenant sign a lease? Answer Yes or No."
        assert run.model.reading == "dialogue" and run.model.side_input  # the rest of cpu-quick stays
        artifact = _train(table, prompt=run.model.prompt.model_dump())
        prompts = Scorer(artifact, EXACT).inputs(table.head(30)).prompts
        read = [p for p in prompts if p]
        assert read and all(p.startswith("You are a letting agent.") and "Will this tenant sign a lease?" in p for p in read)
        assert not any("lock in an order" in p for p in read)

    def test_the_paper_preset_reads_the_whole_prompt_without_side_input(self) -> None:
        from leadrank.settings import RunConfig

        paper = RunConfig.resolve("paper").model
        assert (paper.reading, paper.side_input, paper.mode, paper.pooling) == ("prompt", False, "lora", "last")
