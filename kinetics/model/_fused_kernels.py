"""Triton kernels behind :mod:`kinetics.model.fused` (imported only with CUDA and triton).

Rounding follows the torch reference: every value the reference rounds to the
activation dtype (the residual sum, the normalized row before its weight, the
weighted row, each RoPE product and their sum, silu(gate), the final product) is
rounded here too; statistics and products are computed in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, h_ptr, n_cols, eps,
                         HAS_X: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    dt = out_ptr.dtype.element_ty
    h = tl.load(res_ptr + row * n_cols + cols, mask=mask, other=0.0)
    if HAS_X:
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
        h = (x.to(tl.float32) + h.to(tl.float32)).to(dt)
        tl.store(h_ptr + row * n_cols + cols, h, mask=mask)
    hf = h.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(hf * hf, axis=0) / n_cols + eps)
    y = (hf * rstd).to(dt)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    tl.store(out_ptr + row * n_cols + cols, (w.to(tl.float32) * y.to(tl.float32)).to(dt),
             mask=mask)


def add_rms_norm(x, residual, weight, eps):
    batch, hidden = residual.shape
    out = torch.empty_like(residual)
    h = torch.empty_like(residual) if x is not None else residual
    block = triton.next_power_of_2(hidden)
    _add_rms_norm_kernel[(batch,)](x if x is not None else residual, residual, weight, out, h,
                                   hidden, eps, HAS_X=x is not None, BLOCK=block,
                                   num_warps=4 if block <= 4096 else 8)
    return out, h


@triton.jit
def _qk_norm_rope_kernel(qkv_ptr, qn_ptr, kn_ptr, pos_ptr, freq_ptr, q_ptr, k_ptr, v_ptr,
                         page_ptr, slot, HQ: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr,
                         HALF: tl.constexpr, PAGE: tl.constexpr, PAGED: tl.constexpr, eps):
    row = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    half = HALF
    j = tl.arange(0, HALF)
    dt = q_ptr.dtype.element_ty
    src = qkv_ptr + row * (HQ + 2 * HKV) * D + head * D
    x1 = tl.load(src + j)
    x2 = tl.load(src + half + j)
    if PAGED:  # k and v go straight into the request's cache page (HND layout)
        page = tl.load(page_ptr + row).to(tl.int64)
        kv_off = ((page * HKV + (head - HQ) % HKV) * PAGE + slot) * D
    else:
        kv_off = (row * HKV + (head - HQ) % HKV) * D
    if head >= HQ + HKV:  # v: copy
        dst = v_ptr + kv_off
        tl.store(dst + j, x1)
        tl.store(dst + half + j, x2)
    else:
        if head < HQ:
            w_ptr = qn_ptr
            dst = q_ptr + (row * HQ + head) * D
        else:
            w_ptr = kn_ptr
            dst = k_ptr + kv_off
        f1, f2 = x1.to(tl.float32), x2.to(tl.float32)
        rstd = tl.rsqrt((tl.sum(f1 * f1, axis=0) + tl.sum(f2 * f2, axis=0)) / D + eps)
        w1 = tl.load(w_ptr + j).to(tl.float32)
        w2 = tl.load(w_ptr + half + j).to(tl.float32)
        y1 = (w1 * (f1 * rstd).to(dt).to(tl.float32)).to(dt).to(tl.float32)
        y2 = (w2 * (f2 * rstd).to(dt).to(tl.float32)).to(dt).to(tl.float32)
        pos = tl.load(pos_ptr + row).to(tl.float32)
        ang = pos * tl.load(freq_ptr + j)
        c = tl.cos(ang).to(dt).to(tl.float32)
        s = tl.sin(ang).to(dt).to(tl.float32)
        o1 = (y1 * c).to(dt).to(tl.float32) + (-y2 * s).to(dt).to(tl.float32)
        o2 = (y2 * c).to(dt).to(tl.float32) + (y1 * s).to(dt).to(tl.float32)
        tl.store(dst + j, o1.to(dt))
        tl.store(dst + half + j, o2.to(dt))


def qk_norm_rope(qkv, q_norm, k_norm, positions, inv_freq, num_q_heads, num_kv_heads, eps,
                 slot=None):
    """q, k, v (k, v None when ``slot``, a PagedSlot, receives them in its pages)."""
    batch = qkv.shape[0]
    d = qkv.shape[1] // (num_q_heads + 2 * num_kv_heads)
    q = torch.empty(batch, num_q_heads, d, dtype=qkv.dtype, device=qkv.device)
    if slot is None:
        k = torch.empty(batch, num_kv_heads, d, dtype=qkv.dtype, device=qkv.device)
        v = torch.empty_like(k)
        page, index, page_size = positions, 0, 1  # page/index unused
    else:
        k, v, page, index = slot.k_pages, slot.v_pages, slot.page, slot.index
        page_size = k.shape[2]
    grid = (batch, num_q_heads + 2 * num_kv_heads)
    _qk_norm_rope_kernel[grid](qkv, q_norm, k_norm, positions, inv_freq, q, k, v, page, index,
                               HQ=num_q_heads, HKV=num_kv_heads, D=d, HALF=d // 2,
                               PAGE=page_size, PAGED=slot is not None, eps=eps, num_warps=1)
    return (q, k, v) if slot is None else (q, None, None)


@triton.jit
def _silu_mul_kernel(gu_ptr, out_ptr, width, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < width
    dt = out_ptr.dtype.element_ty
    g = tl.load(gu_ptr + row * 2 * width + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(gu_ptr + row * 2 * width + width + cols, mask=mask, other=0.0).to(tl.float32)
    act = (g / (1.0 + tl.exp(-g))).to(dt).to(tl.float32)
    tl.store(out_ptr + row * width + cols, (act * u).to(dt), mask=mask)


def silu_mul(gate_up):
    batch, width = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(batch, width, dtype=gate_up.dtype, device=gate_up.device)
    block = min(1024, triton.next_power_of_2(width))
    _silu_mul_kernel[(batch, triton.cdiv(width, block))](gate_up, out, width, BLOCK=block,
                                                         num_warps=4)
    return out
