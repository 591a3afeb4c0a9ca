"""Explanations by occlusion: leadrank.explain (explain, explain_top, find_lead) and `leadrank explain`.

One tiny LoRA model is trained per module; the Scorer built on it is shared (explaining only
reads the model), except where a test sets the heads by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose
from typer.testing import CliRunner

import leadrank.cli as cli
from helpers import train_tiny_model
from leadrank.artifact import load
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.io import write_table
from leadrank.data.schema import LeadDataError
from leadrank.data.synth import SynthConfig, simulate
from leadrank.explain import Explanation, explain, explain_top, find_lead
from leadrank.inference import Scorer
from leadrank.settings import ScoreConfig

# a few fields of each kind keep the 1 + n_features + n_turns prompts per explanation cheap
_KEEP = ("source", "lead_age_days", "customer_age", "city_tier", "has_private_parking", "app_visits_7d")
FEATURES = FeatureSpec(features=[f for f in FeatureSpec.nev_default().features if f.name in _KEEP])
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")
# batch neighbours and padding move float32 scores by ~1e-6 (see tests/test_inference.py)
ATOL = 1e-4

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=300, seed=5))


@pytest.fixture(scope="module")
def model_dir(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(table, tmp_path_factory.mktemp("explain"), FEATURES)


@pytest.fixture(scope="module")
def scorer(model_dir: Path) -> Scorer:
    return Scorer(load(model_dir), EXACT)


@pytest.fixture(scope="module")
def lead(table: pd.DataFrame) -> pd.Series:
    """A lead with a dialogue of several turns (and a blank line, which is not a turn)."""
    row = table[table["dialogue"].str.count("\n") >= 5].iloc[0].copy()
    row["dialogue"] = row["dialogue"].replace("\n", "\n   \n", 1)
    return row


def _score_alone(model_dir: Path, row: pd.Series) -> pd.Series:
    return Scorer(load(model_dir), EXACT).score(pd.DataFrame([row.to_dict()])).iloc[0]


def _turns(row: pd.Series) -> list[str]:
    return [line.strip() for line in row["dialogue"].split("\n") if line.strip()]


# --------------------------------------------------------------------------- explain


class TestExplain:
    def test_the_baseline_is_what_the_scorer_gives(self, scorer: Scorer, model_dir: Path, lead: pd.Series) -> None:
        result = explain(scorer, lead)
        alone = _score_alone(model_dir, lead)
        assert result.lead_id == lead["lead_id"]
        assert_allclose([result.probability, result.rank_score], [alone["probability"], alone["rank_score"]], rtol=0, atol=ATOL)

    def test_one_factor_per_field_and_one_turn_per_non_blank_line(self, scorer: Scorer, lead: pd.Series) -> None:
        result = explain(scorer, lead)
        turns = _turns(lead)
        assert sorted(f.field for f in result.factors) == sorted(FEATURES.names)
        assert sorted(t.index for t in result.turns) == list(range(len(turns)))
        assert {t.index: t.text for t in result.turns} == dict(enumerate(turns))
        assert result.n_prompts == 1 + len(FEATURES.features) + len(turns)
        effects = [f.rank_effect for f in result.factors]
        assert effects == sorted(effects, reverse=True)

    def test_an_effect_is_the_score_minus_the_score_of_the_occluded_lead(self, scorer: Scorer, model_dir: Path, lead: pd.Series) -> None:
        result = explain(scorer, lead)
        baseline = _score_alone(model_dir, lead)
        factor = max(result.factors, key=lambda f: abs(f.rank_effect))
        masked = lead.copy()
        masked[factor.field] = None
        without_field = _score_alone(model_dir, masked)
        assert_allclose(factor.rank_effect, baseline["rank_score"] - without_field["rank_score"], rtol=0, atol=ATOL)
        assert_allclose(factor.probability_effect, baseline["probability"] - without_field["probability"], rtol=0, atol=ATOL)
        assert abs(factor.rank_effect) > 10 * ATOL  # a field the model reads moves the score

        turns = _turns(lead)
        newest = next(t for t in result.turns if t.index == len(turns) - 1)  # inside the token budget
        dropped = lead.copy()
        dropped["dialogue"] = "\n".join(turns[:-1])
        without_turn = _score_alone(model_dir, dropped)
        assert_allclose(newest.rank_effect, baseline["rank_score"] - without_turn["rank_score"], rtol=0, atol=ATOL)
        assert_allclose(newest.probability_effect, baseline["probability"] - without_turn["probability"], rtol=0, atol=ATOL)

    def test_masking_a_value_that_is_already_missing_changes_nothing(self, scorer: Scorer, lead: pd.Series) -> None:
        gap = lead.copy()
        gap["customer_age"] = np.nan
        factor = next(f for f in explain(scorer, gap).factors if f.field == "customer_age")
        assert factor.value == "unknown"
        assert factor.rank_effect == pytest.approx(0.0, abs=1e-6)
        assert factor.probability_effect == pytest.approx(0.0, abs=1e-6)

    def test_a_column_outside_the_spec_is_neither_a_factor_nor_read(self, scorer: Scorer, lead: pd.Series) -> None:
        plain = explain(scorer, lead)
        extra = lead.copy()
        extra["shoe_size"] = 44
        with_extra = explain(scorer, extra)
        assert "shoe_size" not in {f.field for f in with_extra.factors}
        assert with_extra.rank_score == pytest.approx(plain.rank_score, abs=1e-6)
        assert [f.field for f in with_extra.factors] == [f.field for f in plain.factors]

    def test_a_lead_without_dialogue_has_no_turns(self, scorer: Scorer, lead: pd.Series) -> None:
        silent = lead.copy()
        silent["dialogue"] = "  \n"
        result = explain(scorer, silent)
        assert result.turns == []
        assert result.n_prompts == 1 + len(FEATURES.features)

    def test_the_same_lead_gives_the_same_explanation(self, scorer: Scorer, lead: pd.Series) -> None:
        first, second = explain(scorer, lead), explain(scorer, lead)
        assert first.model_dump(exclude={"seconds"}) == second.model_dump(exclude={"seconds"})

    def test_top_keeps_the_strongest_positive_and_negative_fields_and_turns(self, scorer: Scorer, lead: pd.Series) -> None:
        full, short = explain(scorer, lead), explain(scorer, lead, top=2)
        positive = [f for f in full.factors if f.rank_effect > 0][:2]
        negative = [f for f in full.factors if f.rank_effect < 0][-2:]
        assert short.factors == positive + negative
        by_size = sorted(full.turns, key=lambda t: -abs(t.rank_effect))
        assert short.turns == by_size[:2]
        assert short.n_prompts == full.n_prompts  # top trims the answer, not the work

    def test_top_below_one_is_refused(self, scorer: Scorer, lead: pd.Series) -> None:
        with pytest.raises(ValueError, match="top must be at least 1"):
            explain(scorer, lead, top=0)

    def test_a_lead_that_breaks_the_contract_is_refused(self, scorer: Scorer, lead: pd.Series) -> None:
        bad = lead.copy()
        bad["customer_age"] = "old"
        with pytest.raises(LeadDataError, match="customer_age"):
            explain(scorer, bad)


class TestHandSetHeads:
    def test_heads_that_ignore_the_input_give_zero_effects(self, model_dir: Path, lead: pd.Series) -> None:
        artifact = load(model_dir)
        with torch.no_grad():
            for head, bias in ((artifact.model.heads.point, -1.25), (artifact.model.heads.pair, 0.75)):
                head[-1].weight.zero_()
                head[-1].bias.fill_(bias)
        scorer = Scorer(artifact, ScoreConfig(dtype="fp32", rank_by="pair"))
        result = explain(scorer, lead)
        assert result.rank_score == pytest.approx(0.75)  # the pair head's constant
        assert result.probability == pytest.approx(scorer.score(pd.DataFrame([lead.to_dict()]))["probability"][0])
        assert all(f.rank_effect == 0 and f.probability_effect == 0 for f in result.factors)
        assert all(t.rank_effect == 0 and t.probability_effect == 0 for t in result.turns)


class TestExplainTop:
    def test_explains_the_highest_ranked_leads_best_first(self, scorer: Scorer, table: pd.DataFrame) -> None:
        batch = table.iloc[:4]
        results = explain_top(scorer, batch, 2, top=2)
        scores = scorer.score(batch).sort_values("rank_score", ascending=False)
        assert [r.lead_id for r in results] == scores["lead_id"].iloc[:2].tolist()
        assert_allclose([r.rank_score for r in results], scores["rank_score"].iloc[:2], rtol=0, atol=ATOL)


class TestFindLead:
    def test_finds_a_lead_by_its_id_as_text(self, table: pd.DataFrame) -> None:
        numbered = table.iloc[:5].assign(lead_id=[101, 102, 103, 104, 105])
        assert find_lead(numbered, "103")["customer_age"] == table.iloc[2]["customer_age"]

    def test_an_unknown_id_is_named_with_close_ids(self, table: pd.DataFrame) -> None:
        wanted = table["lead_id"].iloc[7]
        typo = wanted[:-2] + wanted[-1]  # one digit dropped
        with pytest.raises(ValueError, match=rf"lead_id '{typo}' is not in the table .*close ids: '{wanted}'"):
            find_lead(table, typo)


# --------------------------------------------------------------------------- CLI

runner = CliRunner()
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def data(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_table(table.iloc[:20], tmp_path_factory.mktemp("leads") / "leads.parquet")


class TestCli:
    def test_json_output_is_an_explanation(self, model_dir: Path, data: Path, lead: pd.Series, table: pd.DataFrame) -> None:
        lead_id = table["lead_id"].iloc[3]
        result = runner.invoke(cli.app, ["explain", str(model_dir), lead_id, str(data), "--json", "--top", "2"])
        assert result.exit_code == 0, result.output
        parsed = Explanation.model_validate(json.loads(result.stdout))
        assert parsed.lead_id == lead_id
        assert len([f for f in parsed.factors if f.rank_effect > 0]) <= 2
        assert parsed.n_prompts == 1 + len(FEATURES.features) + len(_turns(table.iloc[3]))

    def test_tables_name_the_fields_and_the_cost(
        self, model_dir: Path, data: Path, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from rich.console import Console

        monkeypatch.setattr(cli.model, "console", Console(width=300))
        lead_id = table["lead_id"].iloc[3]
        result = runner.invoke(cli.app, ["explain", str(model_dir), lead_id, str(data)])
        out = _ANSI.sub("", result.output)
        assert result.exit_code == 0, out
        assert f"Lead {lead_id}" in out and "prompts scored" in out
        assert "CRM fields" in out and "rank effect" in out

    def test_an_unknown_lead_is_exit_1_with_close_ids(self, model_dir: Path, data: Path, table: pd.DataFrame) -> None:
        wanted = table["lead_id"].iloc[3]
        result = runner.invoke(cli.app, ["explain", str(model_dir), wanted + "9", str(data)])
        assert result.exit_code == 1
        out = " ".join(_ANSI.sub("", result.output).split())
        assert f"lead_id '{wanted}9' is not in the table" in out and f"close ids: '{wanted}'" in out
