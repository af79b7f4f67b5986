"""The one train and eval loop: `sfcli train`, `sfcli eval` and `sfcli ablate` all run here."""

from __future__ import annotations

import contextlib

import torch

from sfcli.data import normalize


def autocast(device: torch.device, amp: bool):
    """Mixed precision on CUDA (bf16 where the GPU has it, else fp16); float32 elsewhere, since
    CPUs without native bf16 only get slower with it."""
    if not amp or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def view_probabilities(model, views: torch.Tensor, device: torch.device, amp: bool = False,
                       chunk: int = 32) -> torch.Tensor:
    """Softmax scores (N, classes), float32 on the CPU, of N uint8 views (N, C, T, H, W), run
    through the network `chunk` views at a time."""
    out = []
    for part in views.split(chunk):
        with autocast(device, amp):
            logits = model(normalize(part.to(device, non_blocking=True)))
        out.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(out)
