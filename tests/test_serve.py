"""The scoring service: leadrank.serve (create_app, ServeSettings, run) and `leadrank serve`.

One tiny LoRA model is trained per module. Most tests drive the app in-process with
FastAPI's TestClient (the lifespan loads the model); one starts a real uvicorn process on
loopback. Leads go over the wire as JSON, as a client would send them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from typer.testing import CliRunner

import leadrank.cli as cli
import leadrank.serve.worker as serve_worker
from helpers import train_tiny_model
from leadrank.artifact import load, read_manifest
from leadrank.config import FeatureSpec, FunnelSpec
from leadrank.data.synth import SynthConfig, simulate
from leadrank.errors import ConfigurationError
from leadrank.explain import explain
from leadrank.inference import Scorer
from leadrank.serve import TOKEN_ENV, ServeSettings, app_from_env, create_app
from leadrank.settings import ScoreConfig

_KEEP = ("source", "lead_age_days", "customer_age", "city_tier", "has_private_parking", "app_visits_7d")
FEATURES = FeatureSpec(features=[f for f in FeatureSpec.nev_default().features if f.name in _KEEP])
FUNNEL = FunnelSpec.paper_default()
EXACT = ScoreConfig(dtype="fp32")
ATOL = 1e-4  # batch neighbours and padding move float32 scores by ~1e-6

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return simulate(SynthConfig.preset("dense", n=300, seed=5))


@pytest.fixture(scope="module")
def model_dir(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_model(table, tmp_path_factory.mktemp("serve"), FEATURES)


@pytest.fixture(scope="module")
def leads(table: pd.DataFrame) -> pd.DataFrame:
    """Twelve leads to score, without outcome columns."""
    return table.iloc[:12][["lead_id", "as_of", *FEATURES.input_columns]].reset_index(drop=True)


@pytest.fixture(scope="module")
def expected(model_dir: Path, leads: pd.DataFrame) -> pd.DataFrame:
    """What the library's Scorer gives for the leads, scored one at a time."""
    scorer = Scorer(load(model_dir), EXACT)
    return pd.concat([scorer.score(leads.iloc[[i]]) for i in range(len(leads))], ignore_index=True)


def as_json(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


@contextmanager
def running(model_dir: Path, **options: object) -> Iterator[TestClient]:
    options = {"api_token": None, "score": EXACT, **options}
    with TestClient(create_app(model_dir, ServeSettings(**options))) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with running(model_dir) as started:
        yield started


def problems(response: httpx.Response) -> list[tuple[int | None, str | None]]:
    return [(p["lead_index"], p["field"]) for p in response.json()["problems"]]


# --------------------------------------------------------------------------- endpoints


class TestScore:
    def test_scores_are_the_scorers_in_request_order(self, client: TestClient, leads: pd.DataFrame, expected: pd.DataFrame) -> None:
        response = client.post("/score", json={"leads": as_json(leads)})
        assert response.status_code == 200
        scores = pd.DataFrame(response.json()["scores"])
        # every column the Scorer returns, and the fields fixed at training (no trend: a request has no yesterday)
        assert list(scores.columns) == [*expected.columns, "percentile", "grade", "model_version"]
        assert scores["lead_id"].tolist() == leads["lead_id"].tolist()
        for column in ("probability", "rank_score"):
            assert_allclose(scores[column], expected[column], rtol=0, atol=ATOL)
        assert set(scores["model_version"]) == {client.get("/model").json()["model_version"]}
        assert set(scores["grade"]) <= set("ABCD") and scores["percentile"].between(0, 100).all()

    def test_integer_ids_come_back_as_sent(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:2].assign(lead_id=[7, 8]))
        response = client.post("/score", json={"leads": body})
        assert [s["lead_id"] for s in response.json()["scores"]] == [7, 8]

    def test_unknown_values_may_be_null_and_extra_fields_are_ignored(self, client: TestClient, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        response = client.post("/score", json={"leads": [{**lead, "customer_age": None, "shoe_size": 44, "label": 1}]})
        assert response.status_code == 200
        assert response.json()["scores"][0]["lead_id"] == lead["lead_id"]


class TestContractErrors:
    def test_wrong_types_name_the_lead_the_field_and_the_fix(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:3])
        body[1]["customer_age"] = "old"
        body[2]["source"] = ["web"]
        del body[2]["dialogue"]
        response = client.post("/score", json={"leads": body})
        assert response.status_code == 422
        assert set(problems(response)) == {(1, "customer_age"), (2, "source"), (2, "dialogue")}
        fixes = {p["field"]: p["fix"] for p in response.json()["problems"]}
        assert "a finite number, or null when unknown" in fixes["customer_age"]
        assert "required" in fixes["dialogue"]

    def test_nan_and_infinity_are_refused(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:2])
        body[0]["customer_age"], body[1]["app_visits_7d"] = float("nan"), float("inf")
        raw = json.dumps({"leads": body}, allow_nan=True)  # NaN / Infinity literals, as some clients send
        response = client.post("/score", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert set(problems(response)) == {(0, "customer_age"), (1, "app_visits_7d")}

    def test_the_data_contract_checks_ids_and_timestamps(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:3])
        body[2]["lead_id"] = body[0]["lead_id"]
        body[1]["as_of"] = "sometime last week"
        response = client.post("/score", json={"leads": body})
        assert response.status_code == 422
        assert set(problems(response)) == {(2, "lead_id"), (1, "as_of")}
        assert "ISO-8601" in next(p["fix"] for p in response.json()["problems"] if p["field"] == "as_of")

    def test_an_unknown_stage_is_named_with_the_allowed_ones(self, client: TestClient, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        response = client.post("/score", json={"leads": [{**lead, "funnel_stage": "signed"}]})
        assert response.status_code == 422
        [problem] = response.json()["problems"]
        assert (problem["lead_index"], problem["field"]) == (0, "funnel_stage")
        assert all(stage in problem["fix"] for stage in FUNNEL.stages)

    def test_text_that_is_not_unicode_is_refused(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:2])
        body[1]["dialogue"] = "Customer: \ud800"  # json.dumps writes the escape "\ud800": valid JSON, not text
        response = client.post("/score", content=json.dumps({"leads": body}), headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert problems(response) == [(1, "dialogue")]
        assert "surrogate" in response.json()["problems"][0]["message"]

    def test_numbers_are_not_converted_from_text_or_true(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:3])
        body[0]["customer_age"], body[1]["app_visits_7d"], body[2]["customer_age"] = "42", True, 42
        response = client.post("/score", json={"leads": body})
        assert response.status_code == 422
        assert set(problems(response)) == {(0, "customer_age"), (1, "app_visits_7d")}  # the integer 42 is a number
        for problem in response.json()["problems"]:
            assert problem["lead_id"] == body[problem["lead_index"]]["lead_id"]
            assert "a finite number" in problem["fix"]

    def test_a_blank_lead_id_is_refused(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:3])
        body[0]["lead_id"], body[2]["lead_id"] = "", " \t "
        response = client.post("/score", json={"leads": body})
        assert response.status_code == 422
        assert problems(response) == [(0, "lead_id"), (2, "lead_id")]
        for problem in response.json()["problems"]:
            assert "empty or only whitespace" in problem["message"] and "not blank" in problem["fix"]

    def test_contract_problems_name_the_lead_id(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:2])
        body[1]["as_of"] = "sometime last week"
        [problem] = client.post("/score", json={"leads": body}).json()["problems"]
        assert (problem["lead_index"], problem["lead_id"], problem["field"]) == (1, body[1]["lead_id"], "as_of")

    def test_a_lead_id_that_is_not_text_is_not_echoed(self, client: TestClient, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:1])
        body[0]["lead_id"], body[0]["customer_age"] = "\ud800", "old"  # json.dumps writes the escape: not text
        response = client.post("/score", content=json.dumps({"leads": body}), headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert {p["field"]: p["lead_id"] for p in response.json()["problems"]} == {"lead_id": None, "customer_age": None}

    def test_explain_top_must_be_a_whole_number(self, client: TestClient, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        for top in ("2", True, 2.5):
            response = client.post("/explain", json={"lead": lead, "top": top})
            assert response.status_code == 422
            [problem] = response.json()["problems"]
            assert problem["field"] == "top" and "whole number from 1 to 100" in problem["fix"]

    def test_a_batch_over_the_limit_is_422_naming_the_limit(self, model_dir: Path, leads: pd.DataFrame) -> None:
        with running(model_dir, max_batch=3) as small:
            response = small.post("/score", json={"leads": as_json(leads.iloc[:4])})
            assert response.status_code == 422
            assert "at most 3 leads" in response.json()["problems"][0]["fix"]
            assert small.post("/score", json={"leads": as_json(leads.iloc[:3])}).status_code == 200

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            (b"", 422),
            (b'{"leads": []}', 422),
            (b'{"leads": [', 422),
            (b"[1, 2]", 422),
            (b'{"leads": "all"}', 422),
            (b'{"leads": "\xff"}', 400),
        ],
    )
    def test_malformed_bodies_get_a_json_error(self, client: TestClient, body: bytes, status: int) -> None:
        response = client.post("/score", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        assert response.json()["error"]


class TestLimitsAndAuth:
    def test_a_dialogue_over_the_character_limit_is_422_naming_the_lead_and_the_limit(self, model_dir: Path, leads: pd.DataFrame) -> None:
        body = as_json(leads.iloc[:3])
        body[0]["dialogue"] = "x" * 1000  # at the limit: fine
        body[1]["dialogue"] = "Customer: hi\n" * 77  # 1,001 characters
        with running(model_dir, max_dialogue_chars=1000) as limited:
            response = limited.post("/score", json={"leads": body})
            assert response.status_code == 422
            [problem] = response.json()["problems"]
            assert (problem["lead_index"], problem["lead_id"], problem["field"]) == (1, body[1]["lead_id"], "dialogue")
            assert "1,001 characters" in problem["message"] and "limit of 1,000" in problem["message"]
            assert "at most 1,000 characters" in problem["fix"]
            body[1]["dialogue"] = body[1]["dialogue"][:1000]
            assert limited.post("/score", json={"leads": body}).status_code == 200

    def test_a_body_over_the_byte_limit_is_413(self, model_dir: Path, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        big = {"leads": [{**lead, "dialogue": "Customer: hello\n" * 70_000}]}  # about 1 MB
        with running(model_dir, max_request_bytes=2**19) as limited:
            response = limited.post("/score", json=big)
            assert response.status_code == 413
            assert "524,288 bytes" in response.json()["error"]
            streamed = limited.post(
                "/score", content=iter([b'{"leads": [', b" " * 2**19, b"]}"]), headers={"content-type": "application/json"}
            )
            assert streamed.status_code == 413  # no Content-Length: counted while reading

    def test_a_token_is_required_except_for_health(self, model_dir: Path, leads: pd.DataFrame) -> None:
        body = {"leads": as_json(leads.iloc[:1])}
        with running(model_dir, api_token="s3cret") as guarded:
            assert guarded.get("/health").status_code == 200
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}):
                response = guarded.post("/score", json=body, headers=headers)
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
                assert TOKEN_ENV in response.json()["error"]
            assert guarded.get("/model").status_code == 401
            ok = {"Authorization": "Bearer s3cret"}
            assert guarded.post("/score", json=body, headers=ok).status_code == 200
            assert guarded.get("/model", headers=ok).status_code == 200

    def test_the_token_comes_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(TOKEN_ENV, "from-env")
        assert ServeSettings().api_token == "from-env"
        monkeypatch.setenv(TOKEN_ENV, "")
        assert ServeSettings().api_token is None

    def test_settings_are_checked(self) -> None:
        with pytest.raises(ValueError, match="max_batch must be at least 1"):
            ServeSettings(max_batch=0)
        with pytest.raises(ConfigurationError, match="max_dialogue_chars must be at least 1"):
            ServeSettings(max_dialogue_chars=0)


class TestOtherEndpoints:
    def test_health_counts_batches_and_leads(self, model_dir: Path, leads: pd.DataFrame) -> None:
        with running(model_dir) as fresh:
            assert fresh.get("/health").json() == {"status": "ok", "pending": 0, "batches": 0, "leads_scored": 0}
            fresh.post("/score", json={"leads": as_json(leads.iloc[:3])})
            assert fresh.get("/health").json() == {"status": "ok", "pending": 0, "batches": 1, "leads_scored": 3}

    def test_model_describes_the_manifest(self, client: TestClient, model_dir: Path) -> None:
        info, manifest = client.get("/model").json(), read_manifest(model_dir)
        for key in ("format_version", "leadrank_version", "backbone", "rank_by", "features", "funnel", "metrics"):
            assert info[key] == manifest[key]

    def test_explain_gives_the_librarys_explanation(self, client: TestClient, model_dir: Path, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[3:4])
        response = client.post("/explain", json={"lead": lead, "top": 2})
        assert response.status_code == 200
        got = response.json()
        want = explain(Scorer(load(model_dir), EXACT), leads.iloc[3], top=2)
        assert got["lead_id"] == want.lead_id
        n_turns = len([line for line in lead["dialogue"].split("\n") if line.strip()])
        assert got["n_prompts"] == want.n_prompts == 1 + len(FEATURES.features) + n_turns
        assert_allclose(got["rank_score"], want.rank_score, rtol=0, atol=ATOL)
        assert [f["field"] for f in got["factors"]] == [f.field for f in want.factors]

    def test_explain_refuses_a_bad_lead_with_its_field(self, client: TestClient, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        response = client.post("/explain", json={"lead": {**lead, "has_private_parking": "maybe"}})
        assert response.status_code == 422
        assert problems(response) == [(0, "has_private_parking")]

    def test_an_internal_failure_is_a_json_500_without_traceback(
        self, model_dir: Path, leads: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

        monkeypatch.setattr(serve_worker, "explain", broken)
        app = create_app(model_dir, ServeSettings(api_token=None, score=EXACT))
        with TestClient(app, raise_server_exceptions=False) as fragile:
            response = fragile.post("/explain", json={"lead": as_json(leads.iloc[:1])[0]})
            assert response.status_code == 500
            assert "internal error" in response.json()["error"]
            assert "secret internals" not in response.text and "Traceback" not in response.text
            assert fragile.post("/score", json={"leads": as_json(leads.iloc[:1])}).status_code == 200  # the worker goes on

    def test_after_shutdown_requests_get_503(self, model_dir: Path, leads: pd.DataFrame) -> None:
        with running(model_dir) as stopped:
            pass
        response = stopped.post("/score", json={"leads": as_json(leads.iloc[:1])})
        assert response.status_code == 503
        assert "shutting down" in response.json()["error"]


# --------------------------------------------------------------------------- micro-batching


class TestMicroBatching:
    def test_concurrent_requests_are_merged_and_get_their_own_scores(
        self, model_dir: Path, leads: pd.DataFrame, expected: pd.DataFrame
    ) -> None:
        parts = [leads.iloc[i : i + 2] for i in range(0, 12, 2)]  # six requests of two leads
        answers: dict[int, httpx.Response] = {}
        with running(model_dir, batch_wait_ms=500, max_batch=5) as merged:
            barrier = threading.Barrier(len(parts))

            def send(i: int) -> None:
                barrier.wait()
                answers[i] = merged.post("/score", json={"leads": as_json(parts[i])})

            threads = [threading.Thread(target=send, args=(i,)) for i in range(len(parts))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            health = merged.get("/health").json()
        for i, part in enumerate(parts):
            scores = pd.DataFrame(answers[i].json()["scores"])
            assert scores["lead_id"].tolist() == part["lead_id"].tolist()
            assert_allclose(scores["rank_score"], expected["rank_score"].iloc[part.index], rtol=0, atol=ATOL)
            assert_allclose(scores["probability"], expected["probability"].iloc[part.index], rtol=0, atol=ATOL)
        assert health["leads_scored"] == 12
        assert 3 <= health["batches"] < len(parts)  # merged, but never more than max_batch=5 leads at once

    def test_the_same_lead_id_in_two_concurrent_requests_is_fine(self, model_dir: Path, leads: pd.DataFrame) -> None:
        body = {"leads": as_json(leads.iloc[:1])}
        with running(model_dir, batch_wait_ms=300) as merged:
            answers: list[httpx.Response] = []
            threads = [threading.Thread(target=lambda: answers.append(merged.post("/score", json=body))) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert [a.status_code for a in answers] == [200, 200]
        first, second = (pd.DataFrame(a.json()["scores"]) for a in answers)
        assert first["lead_id"].tolist() == second["lead_id"].tolist()
        # merged or not (timing decides), the same lead gets the same scores up to float rounding between batch shapes
        assert_allclose(first[["probability", "rank_score"]], second[["probability", "rank_score"]], rtol=0, atol=ATOL)


# --------------------------------------------------------------------------- fuzzing

_FIELDS = ["lead_id", "as_of", "dialogue", *FEATURES.names]
_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.just("Customer: \ud800 lone surrogate"),  # sent as the JSON escape "\\ud800"
)


@st.composite
def _bodies(draw: st.DrawFn, valid: list[dict]) -> bytes:
    """A /score body: valid leads with fields replaced by junk, dropped or added, ids repeated."""
    batch = []
    for _ in range(draw(st.integers(1, 3))):
        lead = dict(draw(st.sampled_from(valid)))
        for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3, unique=True)):
            if draw(st.booleans()):
                lead[name] = draw(_JUNK)
            else:
                lead.pop(name)
        if draw(st.booleans()):
            lead["dialogue"] = draw(st.one_of(st.sampled_from(["", " \n\n ", "Customer: hi\nSpecialist: ok"]), st.text(max_size=200)))
        if draw(st.booleans()):
            lead["funnel_stage"] = draw(st.one_of(st.sampled_from(FUNNEL.stages), st.text(max_size=8), _JUNK))
        if draw(st.booleans()):
            lead[draw(st.text(min_size=1, max_size=8))] = draw(_JUNK)
        batch.append(lead)
    if len(batch) > 1 and draw(st.booleans()):
        batch[-1]["lead_id"] = batch[0].get("lead_id")
    raw = json.dumps({"leads": batch}, allow_nan=True).encode()
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8
        cut = draw(st.integers(0, len(raw)))
        raw = raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + raw[cut:]
    return raw


class TestFuzz:
    def test_any_body_gets_200_or_a_4xx_json_error(self, client: TestClient, leads: pd.DataFrame) -> None:
        valid = as_json(leads.iloc[:4])

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(body=st.one_of(_bodies(valid), st.binary(max_size=64)))
        def check(body: bytes) -> None:
            response = client.post("/score", content=body, headers={"content-type": "application/json"})
            assert 200 <= response.status_code < 500, response.text
            answer = response.json()
            if response.status_code == 200:
                assert len(answer["scores"]) == len(json.loads(body)["leads"])
            else:
                assert answer["error"]

        check()

    def test_a_1_mb_dialogue_is_over_the_default_limit(self, client: TestClient, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        response = client.post("/score", json={"leads": [{**lead, "dialogue": "Customer: hello there\n" * 48_000}]})
        assert response.status_code == 422
        assert problems(response) == [(0, "dialogue")]
        assert "at most 100,000 characters" in response.json()["problems"][0]["fix"]

    @pytest.mark.slow
    def test_a_1_mb_dialogue_is_scored_under_a_raised_limit(self, model_dir: Path, leads: pd.DataFrame) -> None:
        [lead] = as_json(leads.iloc[:1])
        with running(model_dir, max_dialogue_chars=2**21) as roomy:
            response = roomy.post("/score", json={"leads": [{**lead, "dialogue": "Customer: hello there\n" * 48_000}]})
        assert response.status_code == 200
        assert response.json()["scores"][0]["lead_id"] == lead["lead_id"]


# --------------------------------------------------------------------------- command line and a real server

runner = CliRunner()


class TestServeCommand:
    def test_options_reach_uvicorn_and_the_app(self, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import uvicorn

        calls: list[tuple[tuple, dict]] = []
        monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
        monkeypatch.setattr(signal, "signal", lambda *args: None)  # run() sets a SIGTERM handler; not in pytest
        monkeypatch.setenv("LEADRANK_SERVE_CONFIG", "")  # restored after the test
        result = runner.invoke(
            cli.app,
            [
                "serve",
                str(model_dir),
                "--port",
                "9123",
                "--max-batch",
                "7",
                "--workers",
                "2",
                "--max-request-bytes",
                "5000",
                "--batch-wait-ms",
                "12.5",
                "--threads",
                "1",
                "--rank-by",
                "point",
            ],
        )
        assert result.exit_code == 0, result.output
        [(args, kwargs)] = calls
        assert args == ("leadrank.serve.app:app_from_env",)
        assert kwargs | {"timeout_graceful_shutdown": None} == {
            "factory": True,
            "host": "127.0.0.1",
            "port": 9123,
            "workers": 2,
            "timeout_graceful_shutdown": None,
        }
        app = app_from_env()  # what each uvicorn worker builds
        settings = app.state.settings
        assert (settings.max_batch, settings.max_request_bytes, settings.batch_wait_ms) == (7, 5000, 12.5)
        assert (settings.score.threads, settings.score.rank_by) == (1, "point")

    def test_a_folder_that_is_not_a_model_is_exit_1(self, tmp_path: Path) -> None:
        result = runner.invoke(cli.app, ["serve", str(tmp_path)])
        assert result.exit_code == 1
        assert "not a leadrank model directory" in " ".join(result.output.split())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
class TestRealServer:
    def test_serves_on_loopback_and_exits_0_on_sigterm_after_finishing_requests(
        self, model_dir: Path, leads: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        port = _free_port()
        env = {**os.environ, TOKEN_ENV: "tok", "LEADRANK_CACHE": str(tmp_path_factory.getbasetemp() / "leadrank-cache")}
        server = subprocess.Popen(
            [sys.executable, "-m", "leadrank", "serve", str(model_dir), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer tok"}
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            first = httpx.post(f"{url}/score", json={"leads": as_json(leads.iloc[:2])}, headers=auth, timeout=60)
            assert first.status_code == 200 and len(first.json()["scores"]) == 2

            in_flight: dict[str, httpx.Response] = {}
            sender = threading.Thread(
                target=lambda: in_flight.update(r=httpx.post(f"{url}/score", json={"leads": as_json(leads)}, headers=auth, timeout=60))
            )
            sender.start()
            while sender.is_alive() and httpx.get(f"{url}/health").json()["pending"] == 0:
                time.sleep(0.01)
            server.send_signal(signal.SIGTERM)
            sender.join(60)
            assert in_flight["r"].status_code == 200 and len(in_flight["r"].json()["scores"]) == len(leads)
            assert server.wait(60) == 0
            assert "Application shutdown complete" in (server.stdout.read() if server.stdout else "")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
