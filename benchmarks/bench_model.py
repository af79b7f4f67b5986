"""Training and inference clips per second of sfcli's SlowFast R50 networks against PyTorchVideo's.

Both networks are built with the same configuration and carry the same weights (PyTorchVideo's
random weights moved into sfcli with sfcli.checkpoint's key mapping); they run on the same clips,
alternately in one process, so that load from other processes falls on both alike, and each
rate is the median over the timed iterations. Before timing, each pair's logits must agree.

The reference for slowfast_8x8_r50 is PyTorchVideo's hub `slowfast_r50`; for slowfast_4x16_r50
it is PyTorchVideo's `create_slowfast` with alpha 8 (fusion stride 8), fusion kernel 5, and
T = 4 in the head's pooling. The head's pooling always matches res5's size (crop / 32, rounded up).

A training step is forward, cross-entropy, backward and an SGD step with each tool's own
optimizer: sfcli's `recipe.make_optimizer`, and for the reference the one PySlowFast builds (the
same SGD: Nesterov momentum 0.9, weight decay 1e-4 except on BN and biases, torch's default
implementation). Inference is a forward under torch.inference_mode; sfcli runs it on
`fuse_bn(model)` (its inference model, BN folded into the convs) unless --no-fuse-bn.
Precision: float32, and bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX); bf16
autocast on CUDA (--precision to choose). Memory formats: the networks as built, and both
converted to channels_last_3d. The process runs with sfcli's allocator setting
(`devices.keep_freed_memory`), which applies to both networks alike.

Usage: python benchmarks/bench_model.py [--arch slowfast_8x8_r50 slowfast_4x16_r50]
       [--batch 2] [--crop 112] [--iters 5] [--warmup 2] [--modes train infer]
       [--memory-formats default channels_last_3d] [--precision auto] [--compile] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from machine import conv_peak_gflops, counted_flops, cpu_name, synchronize
from rich.console import Console
from rich.table import Table

from sfcli import checkpoint as ck
from sfcli.devices import cpu_has_bf16, keep_freed_memory
from sfcli.fused import fuse_bn
from sfcli.layouts import translate
from sfcli.presets import build_config, create_model
from sfcli.recipe import TrainConfig, make_optimizer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pytorchvideo's import uses the deprecated torch.jit.script
    import pytorchvideo
    from pytorchvideo.models import hub
    from pytorchvideo.models.slowfast import create_slowfast

# "default": the networks as built and a contiguous clip, as a caller who sets no memory format
# runs them; "channels_last_3d": the caller converts both networks and the clip.
MEMORY_FORMATS = {"default": None, "channels_last_3d": torch.channels_last_3d}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Largest max |sfcli - reference| / max |reference| of float32 logits that counts as agreement.
FP32_TOLERANCE = 1e-4


def reference_model(arch: str, crop: int) -> torch.nn.Module:
    """PyTorchVideo's network for an sfcli preset, its head pooling set for `crop`."""
    cfg = build_config(arch)
    side = -(-crop // 32)  # res5's side: five stride-2 layers, each rounding up
    pool = ((cfg.frames, side, side), (cfg.fast_frames, side, side))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch == "slowfast_8x8_r50":
            return hub.slowfast_r50(pretrained=False, head_pool_kernel_sizes=pool)
        return create_slowfast(
            model_depth=cfg.depth,
            slowfast_channel_reduction_ratio=(int(1 / cfg.beta),),
            slowfast_conv_channel_fusion_ratio=cfg.fusion_ratio,
            slowfast_fusion_conv_kernel_size=(cfg.fusion_kernel, 1, 1),
            slowfast_fusion_conv_stride=(cfg.alpha, 1, 1),
            model_num_class=cfg.num_classes,
            head_pool_kernel_sizes=pool,
        )


def twin_models(arch: str, crop: int, seed: int = 0):
    """(sfcli model, reference model) with the same weights. BN gammas and statistics are random,
    so that no block starts as the identity and the logits check means something."""
    torch.manual_seed(seed)
    reference = reference_model(arch, crop)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.weight.uniform_(0.2, 1.0, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    ours = create_model(arch)
    ck.load_weights(ours, translate(reference.state_dict(), "pytorchvideo", "sfcli"))
    return ours, reference


def pyslowfast_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.SGD:
    """The optimizer PySlowFast's `construct_optimizer` builds for this recipe."""
    bn = [p for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._NormBase) for p in m.parameters()]
    bn_ids = {id(p) for p in bn}
    rest = [p for p in model.parameters() if id(p) not in bn_ids]
    groups = [{"params": rest, "weight_decay": weight_decay}, {"params": bn, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay, dampening=0.0, nesterov=True)


class Runner:
    """One network's training step and inference call on a clip (B, 3, alpha*T, H, W)."""

    def __init__(self, model, is_reference: bool, slow_index, autocast):
        self.model, self.is_reference, self.slow_index, self.autocast = model, is_reference, slow_index, autocast
        recipe = TrainConfig(lr=1e-3)
        self.optimizer = (pyslowfast_optimizer(model, recipe.base_lr, recipe.weight_decay) if is_reference
                          else make_optimizer(model, recipe))

    def logits(self, clip):
        with self.autocast():
            if self.is_reference:  # a fresh list on every call: the reference's forward overwrites it
                return self.model([clip.index_select(2, self.slow_index), clip])
            return self.model(clip)

    def train_step(self, clip, labels):
        loss = F.cross_entropy(self.logits(clip).float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def infer(self, clip):
        with torch.inference_mode():
            self.logits(clip)


def relative_error(ours, reference) -> float:
    return ((ours.float() - reference.float()).abs().max() / reference.float().abs().max()).item()


def check_logits(ours: Runner, reference: Runner, clip, train: bool) -> tuple[float, float]:
    """Relative errors of sfcli's logits and of the reference's, both at the benchmark's
    precision, against the reference's in float32: in eval mode for inference, in training mode
    (batch statistics; dropout off so that both compute the same function) for training, on
    copies, so that running statistics are left as they were."""
    outputs = []
    float32 = contextlib.nullcontext
    for runner, autocast in ((ours, ours.autocast), (reference, reference.autocast), (reference, float32)):
        model = copy.deepcopy(runner.model).train(train)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        with torch.no_grad():
            outputs.append(Runner(model, runner.is_reference, runner.slow_index, autocast).logits(clip))
    return relative_error(outputs[0], outputs[2]), relative_error(outputs[1], outputs[2])


def time_pair(run_ours, run_reference, iters: int, warmup: int, device) -> tuple[float, float]:
    """Median seconds per call of each, alternating which runs first."""
    for _ in range(warmup):
        run_ours()
        run_reference()
    times = ([], [])
    for i in range(iters):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            synchronize(device)
            start = time.perf_counter()
            (run_ours, run_reference)[which]()
            synchronize(device)
            times[which].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_row(arch, mode, precision, memory_format, args, device, peak: float) -> dict:
    """One row; `peak` is the device's conv GFLOP/s at this precision (machine.conv_peak_gflops)."""
    cfg = build_config(arch)
    ours, reference = twin_models(arch, args.crop)
    if mode == "infer":
        ours.eval()
        reference.eval()
        if not args.no_fuse_bn:
            ours = fuse_bn(ours)
    fmt = MEMORY_FORMATS[memory_format] or torch.preserve_format
    ours = ours.to(device, memory_format=fmt)
    reference = reference.to(device, memory_format=fmt)
    g = torch.Generator().manual_seed(2)
    clip = torch.randn(args.batch, 3, cfg.fast_frames, args.crop, args.crop, generator=g)
    clip = clip.to(device, memory_format=fmt)
    labels = torch.randint(cfg.num_classes, (args.batch,), generator=g).to(device)
    slow_index = ours.slow_index.to(device)

    def autocast():
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=DTYPES[precision])

    runners = [Runner(m, m is reference, slow_index, autocast) for m in (ours, reference)]
    # Agreement: float32 logits within FP32_TOLERANCE of the reference's; in mixed precision, no
    # further from the reference's float32 logits than twice the reference's own rounding error.
    error, reference_error = check_logits(*runners, clip, train=mode == "train")
    if error > max(FP32_TOLERANCE, 2 * reference_error):
        raise SystemExit(f"{arch} {mode} {precision} {memory_format}: logits disagree, relative error {error:.2e} "
                         f"(the reference's own: {reference_error:.2e})")
    if args.compile:
        for runner in runners:
            runner.model = torch.compile(runner.model)
    if mode == "train":
        calls = [lambda r=r: r.train_step(clip, labels) for r in runners]
    else:
        calls = [lambda r=r: r.infer(clip) for r in runners]
    # The same function has the same FLOPs; counted on the reference, whose convs are all aten's
    # (the counter does not see the oneDNN ops of sfcli's inference network).
    flops = counted_flops(calls[1])
    seconds = time_pair(*calls, args.iters, args.warmup, device)
    rates = [args.batch / s for s in seconds]
    gflops = [flops / s / 1e9 for s in seconds]
    return {
        "arch": arch, "mode": mode, "precision": precision, "memory_format": memory_format,
        "compile": args.compile, "fuse_bn": mode == "infer" and not args.no_fuse_bn,
        "sfcli_clips_per_s": rates[0], "reference_clips_per_s": rates[1], "ratio": rates[0] / rates[1],
        "max_rel_error": error, "reference_max_rel_error": reference_error,
        "sfcli_gflops": gflops[0], "reference_gflops": gflops[1],
        "sfcli_peak_fraction": gflops[0] / peak, "reference_peak_fraction": gflops[1] / peak, "conv_peak_gflops": peak,
    }


def environment(device) -> dict:
    info = {
        "python": platform.python_version(), "torch": torch.__version__,
        "pytorchvideo": pytorchvideo.__version__, "threads": torch.get_num_threads(),
    }
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["device"] = torch.cuda.get_device_name(device)
    else:
        info["device"] = f"{cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"
    return info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["slowfast_8x8_r50", "slowfast_4x16_r50"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="clips per batch (default: 2 on the CPU, 8 on CUDA)")
    parser.add_argument("--crop", type=int, help="side of the square crop (default: 112 on the CPU, 224 on CUDA)")
    parser.add_argument("--iters", type=int,
                        help="timed iterations of each network (default: 5 on the CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default: 2 on the CPU, 5 on CUDA)")
    parser.add_argument("--modes", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    parser.add_argument("--memory-formats", nargs="+", choices=list(MEMORY_FORMATS), default=list(MEMORY_FORMATS))
    parser.add_argument("--precision", nargs="+", choices=["auto", *DTYPES], default=["auto"],
                        help="auto: fp32 and, where the CPU has native bf16, bf16 on the CPU; bf16 autocast on CUDA")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks")
    parser.add_argument("--no-fuse-bn", action="store_true", help="run sfcli's inference without folding BN")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.batch = args.batch or (8 if cuda else 2)
    args.crop = args.crop or (224 if cuda else 112)
    args.iters = args.iters or (20 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    # float32 means float32 on CUDA too: no TF32 convolutions or matrix products.
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    auto = ["bf16"] if cuda else ["fp32", "bf16"] if cpu_has_bf16() else ["fp32"]
    precisions = [q for p in args.precision for q in (auto if p == "auto" else [p])]
    keep_freed_memory()

    peaks = {precision: conv_peak_gflops(device, DTYPES[precision]) for precision in precisions}
    rows = []
    for arch in args.arch:
        for mode in args.modes:
            for precision in precisions:
                for memory_format in args.memory_formats:
                    rows.append(bench_row(arch, mode, precision, memory_format, args, device, peaks[precision]))
    settings = {"batch": args.batch, "crop": args.crop, "iters": args.iters, "warmup": args.warmup,
                "compile": args.compile, "device": str(device)}
    if args.json:
        print(json.dumps({"settings": settings, "environment": environment(device), "conv_peak_gflops": peaks,
                          "rows": rows}, indent=2))
        return
    env = environment(device)
    table = Table(title=f"{env['device']}, torch {env['torch']}, {env['threads']} threads: batch {args.batch}, "
                        f"{args.crop}² crop, median of {args.iters} after {args.warmup} warm-up"
                        + (", torch.compile" if args.compile else ""))
    for column in ("model", "mode", "precision", "memory format", "sfcli clips/s", "reference clips/s",
                   "sfcli/reference", "GFLOP/s sfcli / ref", "of conv peak", "rel err sfcli / ref"):
        left = column in ("model", "mode", "precision", "memory format")
        table.add_column(column, justify="left" if left else "right")
    for row in rows:
        mode = row["mode"] + (" (fused BN)" if row["fuse_bn"] else "")
        table.add_row(row["arch"], mode, row["precision"], row["memory_format"], f"{row['sfcli_clips_per_s']:.2f}",
                      f"{row['reference_clips_per_s']:.2f}", f"{row['ratio']:.2f}x",
                      f"{row['sfcli_gflops']:.0f} / {row['reference_gflops']:.0f}",
                      f"{row['sfcli_peak_fraction']:.0%} / {row['reference_peak_fraction']:.0%}",
                      f"{row['max_rel_error']:.1e} / {row['reference_max_rel_error']:.1e}")
    console = Console()
    if not console.is_terminal:  # a pipe or a file: print the table whole, not squeezed to 80 columns
        console = Console(width=200)
    console.print(table)
    console.print("conv peak (machine.conv_peak_gflops, forward of the network's widest convs): "
                  + ", ".join(f"{p} {g:.0f} GFLOP/s" for p, g in peaks.items())
                  + "; GFLOP/s counts the convolutions and matrix products of a call, forward and backward")


if __name__ == "__main__":
    main()
