"""Tests for the asLLR model: inputs, padding, LoRA/frozen modes, heads, HPRO gradients, feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from leadrank.config import FunnelSpec
from leadrank.data.prompt import DEFAULT_TEMPLATE, PromptTemplate
from leadrank.funnel import funnel_pairs, label_pairs, tier_membership
from leadrank.losses import preference_loss
from leadrank.model import frozen
from leadrank.model.asllr import ASLLR, ScoringHeads, answer_token_ids
from leadrank.model.backbone import load_backbone, load_tokenizer
from leadrank.model.frozen import FeatureCache, extract_features, prompt_key
from leadrank.model.inputs import collate, length_sorted_batches, tokenize
from leadrank.settings import ModelConfig, RunConfig

SHORT = "Lead A: app visits 3. Answer:"
LONG = (
    "Lead B: source referral; budget 250k-350k; store visits 4; test drive booked. "
    "Customer: we almost went with the BYD, but the configurator convinced us. " * 6 + "Answer:"
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path / "cache"))


def make_model(**overrides: object) -> ASLLR:
    config = ModelConfig(backbone="tiny", **overrides)
    backbone = load_backbone("tiny")
    torch.manual_seed(0)
    return ASLLR(backbone.model, config, answer_token_ids(backbone.tokenizer, DEFAULT_TEMPLATE))


def batch_of(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    tokenizer = load_tokenizer("tiny")
    return collate(tokenize(tokenizer, prompts), tokenizer.pad_token_id)


# --------------------------------------------------------------------------- inputs


class TestCollate:
    def test_left_pads_to_the_longest_row(self) -> None:
        input_ids, mask = collate([[5, 6, 7], [8], [9, 10]], pad_id=0)
        assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 9, 10]]
        assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
        assert input_ids.dtype == mask.dtype == torch.long

    def test_pad_id_is_used_and_an_empty_row_is_all_padding(self) -> None:
        input_ids, mask = collate([[4, 4], []], pad_id=99)
        assert input_ids.tolist() == [[4, 4], [99, 99]]
        assert mask.tolist() == [[1, 1], [0, 0]]

    def test_tokenize_does_not_turn_typed_special_tokens_into_control_tokens(self) -> None:
        tokenizer = load_tokenizer("tiny")
        (ids,) = tokenize(tokenizer, ["hello <eos> there"])
        assert tokenizer.eos_token_id not in ids
        assert tokenizer.pad_token_id not in ids


class TestLengthSortedBatches:
    @settings(max_examples=200, deadline=None)
    @given(
        lengths=st.lists(st.integers(0, 300), max_size=60),
        max_batch=st.integers(1, 9),
        max_tokens=st.none() | st.integers(1, 1200),
    )
    def test_every_index_once_within_limits(self, lengths: list[int], max_batch: int, max_tokens: int | None) -> None:
        batches = length_sorted_batches(lengths, max_batch, max_tokens)
        flat = [int(i) for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        for batch in batches:
            assert 1 <= len(batch) <= max_batch
            padded = max(lengths[i] for i in batch) * len(batch)
            if max_tokens is not None and len(batch) > 1:
                assert padded <= max_tokens
        # longest first: lengths never increase along the flattened order
        ordered = [lengths[i] for i in flat]
        assert ordered == sorted(ordered, reverse=True)

    def test_hand_example(self) -> None:
        batches = length_sorted_batches([3, 10, 5, 10, 1], max_batch=2, max_tokens=15)
        assert [b.tolist() for b in batches] == [[1], [3], [2, 0], [4]]

    def test_a_row_longer_than_max_tokens_still_gets_a_batch(self) -> None:
        batches = length_sorted_batches([50, 2, 2], max_batch=4, max_tokens=10)
        assert [b.tolist() for b in batches] == [[0], [1, 2]]


# --------------------------------------------------------------------------- padding


@pytest.mark.parametrize(
    "overrides",
    [
        {"mode": "lora"},
        {"mode": "frozen", "pooling": "mean", "pool_layer": 1},
        {"mode": "frozen", "pooling": "last", "pool_layer": 1},
        {"mode": "lora", "pooling": "mean"},
    ],
    ids=["lora-last", "frozen-mean-l1", "frozen-last-l1", "lora-mean"],
)
def test_scores_do_not_depend_on_padding(overrides: dict[str, object]) -> None:
    model = make_model(**overrides).eval()
    single, pair = batch_of([SHORT]), batch_of([LONG, SHORT])
    assert pair[1][1].sum() < pair[1].shape[1] / 10  # the short lead is mostly padding
    with torch.no_grad():
        alone = model(*single)
        batched = model(*pair)
    torch.testing.assert_close(batched.point_logits[1:], alone.point_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(batched.pair_scores[1:], alone.pair_scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(batched.pooled[1:], alone.pooled, rtol=0, atol=1e-5)
    if alone.answer_logits is None:  # a frozen model reading an inner layer has no LM-head answer
        assert batched.answer_logits is None
    else:
        torch.testing.assert_close(batched.answer_logits[1:], alone.answer_logits, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- modes


class TestLoraMode:
    def test_only_lora_and_heads_train(self) -> None:
        model = make_model(mode="lora")
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        assert trainable, "something must train"
        assert all(".lora_" in n or n.startswith("heads.") for n in trainable), sorted(trainable)
        assert any(n.startswith("heads.point") for n in trainable) and any(n.startswith("heads.pair") for n in trainable)
        assert any(".lora_A." in n for n in trainable) and any(".lora_B." in n for n in trainable)
        # base weights, embeddings and the LM head stay as loaded
        assert any("q_proj.base_layer.weight" in n for n in frozen)
        assert any("embed_tokens" in n for n in frozen)
        assert not any(p.requires_grad for p in model.causal_lm.get_output_embeddings().parameters())

    def test_trainable_groups_split_heads_and_lora(self) -> None:
        model = make_model(mode="lora")
        heads, lora = model.trainable_groups()
        assert {id(p) for p in heads} == {id(p) for p in model.heads.parameters()}
        names = {id(p): n for n, p in model.named_parameters()}
        assert lora and all(".lora_" in names[id(p)] for p in lora)
        assert len(heads) + len(lora) == sum(p.requires_grad for p in model.parameters())

    def test_default_targets_are_the_attention_projections(self) -> None:
        model = make_model(mode="lora")
        with_lora = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A." in n}
        assert with_lora == {"q_proj", "k_proj", "v_proj", "o_proj"}

    def test_lora_top_layers_puts_lora_in_the_last_layer_only(self) -> None:
        model = make_model(mode="lora", lora_top_layers=1)
        lora_names = [n for n, _ in model.named_parameters() if ".lora_" in n]
        assert lora_names
        assert all(".layers.1." in n for n in lora_names), lora_names
        full = make_model(mode="lora")
        assert any(".layers.0." in n for n, _ in full.named_parameters() if ".lora_" in n)

    def test_lora_rank_follows_the_config(self) -> None:
        model = make_model(mode="lora", lora_r=4)
        a = next(p for n, p in model.named_parameters() if ".lora_A." in n)
        assert a.shape[0] == 4

    def test_wrong_targets_name_the_available_projections(self) -> None:
        with pytest.raises(ValueError, match="qkv_proj") as info:
            make_model(mode="lora", lora_targets=("qkv_proj", "q_proj"))
        message = str(info.value)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            assert name in message


class TestFrozenMode:
    def test_no_backbone_parameter_trains(self) -> None:
        model = make_model(mode="frozen")
        assert not any(p.requires_grad for p in model.lm.parameters())
        assert all(p.requires_grad for p in model.heads.parameters())
        heads, lora = model.trainable_groups()
        assert lora == []
        assert len(heads) == len(list(model.heads.parameters()))

    def test_pooled_input_runs_the_heads_only(self) -> None:
        model = make_model(mode="frozen").eval()
        input_ids, mask = batch_of([SHORT, LONG])
        with torch.no_grad():
            full = model(input_ids, mask)
            heads_only = model(pooled=full.pooled)
        assert heads_only.answer_logits is None
        torch.testing.assert_close(heads_only.pair_scores, full.pair_scores)
        torch.testing.assert_close(heads_only.point_logits, full.point_logits)

    def test_mean_pooling_of_layer_one_differs_from_last_token(self) -> None:
        input_ids, mask = batch_of([SHORT, LONG])
        with torch.no_grad():
            mean, mean_last = make_model(mode="frozen", pooling="mean", pool_layer=1).eval().encode(input_ids, mask)
            last, last_last = make_model(mode="frozen", pooling="last").eval().encode(input_ids, mask)
        assert mean.shape == last.shape == (2, 64)
        assert not torch.allclose(mean, last, atol=1e-3)
        # a frozen model reading an inner layer runs only the layers below it: no final-layer state
        assert mean_last is None
        torch.testing.assert_close(last, last_last)

    def test_pool_layer_middle_is_half_the_depth_of_any_backbone(self) -> None:
        model = make_model(mode="frozen", pooling="mean", pool_layer="middle")
        assert model.pool_layer == 1 and model.reads_inner_layer
        assert len(model.causal_lm.model.layers) == 1

    def test_the_cpu_preset_reads_the_middle_layer(self) -> None:
        assert RunConfig.resolve("cpu-quick").model.pool_layer == "middle"

    def test_pool_layer_beyond_the_backbone_is_refused_up_front(self) -> None:
        with pytest.raises(ValueError, match="pool_layer"):
            make_model(mode="frozen", pooling="mean", pool_layer=5)

    def test_mean_pooling_by_hand(self) -> None:
        model = make_model(mode="frozen", pooling="mean", pool_layer=1).eval()
        input_ids, mask = batch_of([LONG, SHORT])
        with torch.no_grad():
            pooled, _ = model.encode(input_ids, mask)
            ids = batch_of([SHORT])[0]
            states = model.causal_lm(input_ids=ids, output_hidden_states=True).hidden_states[1]
        torch.testing.assert_close(pooled[1], states[0].mean(0), rtol=0, atol=1e-5)


class TestModelConfig:
    def test_lora_with_an_inner_layer_mean_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"use pool_layer=-1 with LoRA .*--preset cpu-lora.*or mode='frozen'"):
            ModelConfig(mode="lora", pooling="mean", pool_layer=1)

    def test_the_allowed_combinations(self) -> None:
        ModelConfig(mode="lora", pooling="mean", pool_layer=-1)
        ModelConfig(mode="frozen", pooling="mean", pool_layer=1)

    def test_unknown_fields_are_refused(self) -> None:
        with pytest.raises(ValueError, match="lora_rank"):
            ModelConfig(lora_rank=8)

    def test_defaults_are_the_papers(self) -> None:
        config = ModelConfig()
        assert (config.mode, config.pooling, config.pool_layer, config.lora_r) == ("lora", "last", -1, 16)
        assert (config.head_hidden, config.head_dropout) == (128, 0.5)


class TestAnswerTokens:
    def test_tiny_tokenizer_gives_two_different_ids(self) -> None:
        yes, no = answer_token_ids(load_tokenizer("tiny"), DEFAULT_TEMPLATE)
        assert yes != no
        assert isinstance(yes, int) and isinstance(no, int)

    def test_answers_sharing_a_first_token_are_refused(self) -> None:
        template = PromptTemplate(answer_yes="Yes", answer_no="Yep")
        with pytest.raises(ValueError, match="same first token"):
            answer_token_ids(load_tokenizer("tiny"), template)


class TestHeads:
    def test_architecture_is_the_papers(self) -> None:
        heads = make_model(mode="frozen").heads
        for head in (heads.point, heads.pair):
            layers = list(head)
            assert [type(layer) for layer in layers] == [nn.Linear, nn.GELU, nn.Dropout, nn.Linear]
            assert (layers[0].in_features, layers[0].out_features) == (64, 128)
            assert layers[2].p == 0.5
            assert (layers[3].in_features, layers[3].out_features) == (128, 1)
        assert heads.point is not heads.pair

    def test_two_independent_scalar_heads(self) -> None:
        torch.manual_seed(0)
        heads = ScoringHeads(8).eval()
        point, pair = heads(torch.randn(5, 8, dtype=torch.bfloat16))
        assert point.shape == pair.shape == (5,)
        assert point.dtype == pair.dtype == torch.float32
        assert not torch.allclose(point, pair)


# --------------------------------------------------------------------------- HPRO gradients


def test_hpro_alone_reaches_the_pairwise_head_and_lora_but_not_the_pointwise_head() -> None:
    funnel = FunnelSpec.paper_default()
    stages = ["test_drive", "call", "new", "defeat", "call", "test_drive"]
    frame = pd.DataFrame(
        {
            "funnel_stage": stages,
            "call_duration_s": [300.0, 200.0, 0.0, 0.0, 30.0, 500.0],
            "label": [0] * len(stages),
        }
    )
    membership = torch.as_tensor(tier_membership(frame, funnel))
    margins = torch.tensor([t.margin for t in funnel.tiers])
    pairs = funnel_pairs(membership, margins)
    assert len(label_pairs(torch.zeros(len(stages)))) == 0  # the binary label alone gives nothing to rank
    assert len(pairs) > 0

    model = make_model(mode="lora").train()
    prompts = [f"Lead {i}: stage {s}. Answer:" for i, s in enumerate(stages)]
    out = model(*batch_of(prompts))
    loss, stats = preference_loss(out.pair_scores, pairs, len(funnel.tiers))
    loss.backward()

    assert stats["pairs"].sum() == len(pairs)
    pair_grad = sum(p.grad.abs().sum() for p in model.heads.pair.parameters())
    assert pair_grad > 0
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in model.heads.point.parameters())
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora_b and any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in lora_b)
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


# --------------------------------------------------------------------------- feature cache


class TestFeatureCache:
    PROMPTS = [SHORT, LONG, "Lead C: new lead. Answer:", "Lead D: defeat. Answer:", "Lead E. Answer:"]

    @pytest.fixture
    def model(self) -> ASLLR:
        return make_model(mode="frozen", pooling="mean", pool_layer=1)

    @staticmethod
    def _count_rows(model: ASLLR, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        rows: list[int] = []
        real = model.encode

        def encode(input_ids: torch.Tensor, attention_mask: torch.Tensor):  # noqa: ANN202
            rows.append(int(input_ids.shape[0]))
            return real(input_ids, attention_mask)

        monkeypatch.setattr(model, "encode", encode)
        return rows

    def _extract(self, model: ASLLR, cache: FeatureCache | None, prompts: list[str]) -> torch.Tensor:
        tokenizer = load_tokenizer("tiny")
        return extract_features(model, prompts, tokenizer, cache, batch_size=2)

    def test_second_call_reads_the_cache(self, model: ASLLR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        rows = self._count_rows(model, monkeypatch)
        cache = FeatureCache(tmp_path / "features")
        first = self._extract(model, cache, self.PROMPTS)
        assert sum(rows) == len(self.PROMPTS)
        assert list(cache.folder.glob("*.safetensors"))
        second = self._extract(model, FeatureCache(tmp_path / "features"), self.PROMPTS)
        assert sum(rows) == len(self.PROMPTS), "nothing should be recomputed"
        assert first.dtype == second.dtype == torch.float32
        assert first.shape == (len(self.PROMPTS), 64)
        assert torch.equal(first, second)

    def test_features_match_a_direct_encode(self, model: ASLLR, tmp_path: Path) -> None:
        features = self._extract(model, FeatureCache(tmp_path / "features"), self.PROMPTS)
        model.eval()
        with torch.no_grad():
            for i, prompt in enumerate(self.PROMPTS):
                pooled, _ = model.encode(*batch_of([prompt]))
                torch.testing.assert_close(features[i], pooled[0], rtol=0, atol=1e-5)

    def test_subsets_and_reorders_are_served_from_the_cache(self, model: ASLLR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        cache = FeatureCache(tmp_path / "features")
        everything = self._extract(model, cache, self.PROMPTS)
        rows = self._count_rows(model, monkeypatch)
        subset = [self.PROMPTS[3], self.PROMPTS[0]]
        got = self._extract(model, cache, subset)
        assert rows == []
        assert torch.equal(got, everything[[3, 0]])

    def test_only_new_prompts_are_computed(self, model: ASLLR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        cache = FeatureCache(tmp_path / "features")
        self._extract(model, cache, self.PROMPTS[:3])
        rows = self._count_rows(model, monkeypatch)
        both = self._extract(model, cache, self.PROMPTS)
        assert sum(rows) == 2
        uncached = self._extract(model, None, self.PROMPTS)
        torch.testing.assert_close(both, uncached, rtol=0, atol=1e-5)
        assert set(cache.get([prompt_key(p) for p in self.PROMPTS])) == {prompt_key(p) for p in self.PROMPTS}

    def test_a_killed_reading_keeps_what_it_read(self, model: ASLLR, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(frozen, "CACHE_CHUNK", 2)
        real, calls = model.encode, []

        def dies_on_the_third_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor):  # noqa: ANN202
            calls.append(int(input_ids.shape[0]))
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(input_ids, attention_mask)

        monkeypatch.setattr(model, "encode", dies_on_the_third_batch)
        cache = FeatureCache(tmp_path / "features")
        with pytest.raises(KeyboardInterrupt):
            self._extract(model, cache, self.PROMPTS)
        assert len(cache.get([prompt_key(p) for p in self.PROMPTS])) == 4
        monkeypatch.setattr(model, "encode", real)
        rows = self._count_rows(model, monkeypatch)
        resumed = self._extract(model, cache, self.PROMPTS)
        assert sum(rows) == 1, "only the lead the killed run had not read"
        torch.testing.assert_close(resumed, self._extract(model, None, self.PROMPTS), rtol=0, atol=1e-5)

    def test_cache_folder_depends_on_pooling_and_lives_under_leadrank_cache(self, tmp_path: Path) -> None:
        checksum = load_backbone("tiny").checksum
        mean = FeatureCache.for_model(make_model(mode="frozen", pooling="mean", pool_layer=1), checksum, torch.float32)
        last = FeatureCache.for_model(make_model(mode="frozen"), checksum, torch.float32)
        assert mean.folder != last.folder
        assert mean.folder.is_relative_to(tmp_path / "cache")
        assert np.all([f.is_dir() for f in (mean.folder, last.folder)])
