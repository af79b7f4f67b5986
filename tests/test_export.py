"""`sfcli export` and `sfcli infer --onnx` on a real video: the exported files compute sfcli's logits."""

import json

import onnx
import onnxruntime
import pytest
import torch
from conftest import one_line_error, sfcli, write_video
from test_infer import tiny_checkpoint

from sfcli import data
from sfcli.export import export_model
from sfcli.predict import load_predictor
from sfcli.transforms import normalize

CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    checkpoint = tiny_checkpoint(root / "four.pt", CLASSES)
    video = write_video(root / "clip.mp4", num_frames=40, size=(48, 64))
    result = sfcli("export", str(checkpoint), str(root / "tiny.onnx"), "--format", "onnx", "--json")
    assert result.returncode == 0, result.stderr
    export_model(checkpoint, root / "tiny.pt", "torchscript")
    return root, checkpoint, video, json.loads(result.stdout)


def real_clips(checkpoint, video):
    """sfcli's own logits of a real video's test views, and those views as the network takes them."""
    predictor = load_predictor(checkpoint, views=(2, 1), device="cpu")
    views = normalize(data.test_views(video, predictor.clip)[0], predictor.clip.mean, predictor.clip.std)
    with torch.no_grad():
        return predictor.model(views), views.contiguous()


def test_onnx_and_torchscript_give_sfcli_logits_on_a_real_clip(exported):
    root, checkpoint, video, summary = exported
    assert summary["format"] == "onnx" and summary["max_error"] < 1e-4 and summary["checked_batch"] == 3
    expected, views = real_clips(checkpoint, video)
    session = onnxruntime.InferenceSession(str(root / "tiny.onnx"), providers=["CPUExecutionProvider"])
    from_onnx = torch.from_numpy(session.run(None, {"clip": views.numpy()})[0])
    from_torchscript = torch.jit.load(str(root / "tiny.pt"))(views)
    for got in (from_onnx, from_torchscript):
        assert got.shape == (2, len(CLASSES))
        assert (got - expected).abs().max() < 1e-4
    # One clip through the same files: the batch dimension is not fixed at the traced one.
    assert torch.allclose(torch.from_numpy(session.run(None, {"clip": views[:1].numpy()})[0]), expected[:1], atol=1e-4)


def test_the_graphs_are_plain_ops_and_the_contract_says_what_goes_in(exported):
    root, *_ = exported
    graph = onnx.load(str(root / "tiny.onnx")).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}  # the standard operator set only
    assert "Conv" in {node.op_type for node in graph.node}
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "mkldnn" not in str(torch.jit.load(str(root / "tiny.pt")).inlined_graph)
    contract = json.loads((root / "tiny.json").read_text())
    assert contract["shape"] == ["batch", 3, contract["frames"], contract["crop"], contract["crop"]]
    assert contract["classes"] == CLASSES and contract["layout"] == "NCTHW"
    assert {"stride", "short_side", "mean", "std"} <= set(contract)


def test_infer_onnx_prints_what_infer_with_the_checkpoint_prints(exported):
    root, checkpoint, video, _ = exported
    runs = [sfcli("infer", str(video), *source, "--views", "2x1", "--json")
            for source in (("--checkpoint", str(checkpoint)), ("--onnx", str(root / "tiny.onnx")))]
    assert all(run.returncode == 0 for run in runs), runs[1].stderr
    (ours,), (theirs,) = (json.loads(run.stdout) for run in runs)
    assert [p["label"] for p in theirs["predictions"]] == [p["label"] for p in ours["predictions"]]
    for a, b in zip(ours["predictions"], theirs["predictions"]):
        assert b["score"] == pytest.approx(a["score"], abs=2e-4)


def test_exported_program_runs_any_batch(exported):
    root, checkpoint, *_ = exported
    result = export_model(checkpoint, root / "tiny.pt2", "exported-program")
    program = torch.export.load(str(root / "tiny.pt2")).module()
    clips = torch.randn(1, *result.input_shape[1:])
    assert program(clips).shape == (1, len(CLASSES)) and result.max_error < 1e-4


def test_a_missing_contract_and_a_mismatch_are_one_line_errors(exported, tmp_path, monkeypatch):
    root, checkpoint, video, _ = exported
    (tmp_path / "lone.onnx").write_bytes((root / "tiny.onnx").read_bytes())
    error = one_line_error(sfcli("infer", str(video), "--onnx", str(tmp_path / "lone.onnx")))
    assert "lone.json" in error
    from sfcli import export
    from sfcli.errors import ExportError

    monkeypatch.setitem(export._EXPORTERS, "torchscript",
                        lambda model, example: (b"", lambda data, clip: torch.zeros(len(clip), len(CLASSES)) + 1))
    with pytest.raises(ExportError, match="was not written"):
        export_model(checkpoint, tmp_path / "bad.pt", "torchscript")
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.json").exists()
