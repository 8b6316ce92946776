"""Invariants of the quantizers: straight-through gradient, round trips, exact chunked search,
SimVQ's whole-codebook update, caching, strict loading, masks, residual dropout, usage tracking."""

from __future__ import annotations

import pytest
import torch

from simvq_audio.errors import SimVQError
from simvq_audio.quantization import (
    CodebookMismatchError,
    CodeUsageTracker,
    EMAVectorQuantizer,
    QuantizerConfig,
    ResidualQuantizer,
    SimVQ,
    VectorQuantizer,
    build_quantizer,
    build_stage,
    frozen_codebook,
    nearest_codes,
)
from simvq_audio.quantization import search as search_module

D, K = 8, 32


def latents(b=2, t=12, d=D, seed=0, scale=1.0):
    return torch.randn(b, d, t, generator=torch.Generator().manual_seed(seed)) * scale


def residual_simvq(n_q: int, seed: int = 0, quantizer_dropout: float = 0.0) -> ResidualQuantizer:
    """``n_q`` SimVQ stages built as the codec builds them (stage ``i`` from seed ``seed + i``)."""
    return build_quantizer(QuantizerConfig(kind="simvq", codebook_size=K, dim=D, n_q=n_q, seed=seed,
                                           quantizer_dropout=quantizer_dropout, data_init=False))


def make(kind: str):
    if kind == "simvq":
        return SimVQ(D, K, seed=3)
    if kind == "vq":
        return VectorQuantizer(D, K, seed=3)
    if kind == "ema":
        return EMAVectorQuantizer(D, K, decay=0.5, seed=3)
    if kind == "residual":
        return residual_simvq(3, seed=3)
    if kind == "residual-ema":
        return ResidualQuantizer([EMAVectorQuantizer(D, K, decay=0.5, seed=i) for i in range(2)])
    raise AssertionError(kind)


KINDS = ["simvq", "vq", "ema", "residual", "residual-ema"]


def brute_force(x, codebook):
    return torch.cdist(x.double(), codebook.double(), compute_mode="donot_use_mm_for_euclid_dist").argmin(dim=1)


# -- straight-through gradient and round trips ---------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_straight_through_gradient_is_identity(kind, train):
    q = make(kind).train(train)
    z = latents(scale=2.0).requires_grad_(True)
    g = torch.randn_like(z)
    q(z).quantized.backward(g)
    assert torch.equal(z.grad, g)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("train", [True, False])
def test_decode_encode_equals_forward(kind, train):
    q = make(kind).train(train)
    z = latents(b=3, t=17)
    codes = q.encode(z)  # before forward: an EMA forward updates the codebook afterwards
    decoded = q.decode(codes)
    out = q(z)
    assert torch.equal(out.codes, codes)
    assert out.codes.dtype == torch.long
    assert decoded.shape == z.shape
    torch.testing.assert_close(out.quantized, decoded, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("frames", [12, 2 * K])  # fewer codes than frames: SimVQ projects W C with its graph
def test_output_carries_the_codebook_the_search_used(kind, frames):
    q = make(kind).train()
    first = q.stages[0] if isinstance(q, ResidualQuantizer) else q
    before = first.codebook().clone()
    z = latents(b=2, t=frames // 2)
    out = q(z)
    assert out.codebook.shape == (K, D) and not out.codebook.requires_grad
    torch.testing.assert_close(out.codebook, first.codebook(), rtol=0, atol=0)  # an EMA one after its update
    if "ema" not in kind:  # a gradient codebook is the one searched: each code is its nearest vector
        assert torch.equal(out.codebook, before)
        flat = z.transpose(1, 2).reshape(-1, D)
        codes = out.codes if out.codes.dim() == 2 else out.codes[:, 0]
        assert torch.equal(codes.reshape(-1), brute_force(flat, out.codebook))


@pytest.mark.parametrize("cls", [SimVQ, VectorQuantizer, EMAVectorQuantizer])
@pytest.mark.parametrize("train", [True, False])
def test_l2_norm_searches_by_cosine_and_outputs_unit_vectors(cls, train):
    q = cls(D, K, seed=3, l2_norm=True).train(train)
    z = latents(b=3, t=17, scale=2.0)
    codes = q.encode(z)
    flat = z.transpose(1, 2).reshape(-1, D)
    cosine = torch.nn.functional.normalize(flat, dim=1) @ torch.nn.functional.normalize(q.codebook(), dim=1).t()
    assert torch.equal(codes.reshape(-1), cosine.argmax(dim=1))
    assert torch.equal(q.encode(z * 5.0), codes)  # the latents' norm does not matter
    decoded = q.decode(codes)
    out = q(z)
    assert torch.equal(out.codes, codes)
    torch.testing.assert_close(decoded.norm(dim=1), torch.ones(3, 17))
    torch.testing.assert_close(out.quantized, decoded, atol=1e-6, rtol=0)
    if train and cls is SimVQ:  # the map W still learns through the normalisation
        out.loss.backward()
        assert q.proj.weight.grad is not None and q.proj.weight.grad.abs().sum() > 0


def test_l2_norm_from_config():
    stage = build_stage(QuantizerConfig(kind="vq", codebook_size=K, dim=D, l2_norm=True))
    assert stage.l2_norm and not build_stage(QuantizerConfig(codebook_size=K, dim=D)).l2_norm


@pytest.mark.parametrize("t", [3, 40])  # fewer and more frames than codes: both lookup paths
def test_first_training_batch_with_data_init_uses_the_initialised_codebook(t):
    q = SimVQ(D, K, seed=0, data_init=True).train()
    z = latents(b=2, t=t, scale=5.0) + 3.0
    out = q(z)
    out.loss.backward()
    assert bool(q.initialized)
    assert torch.equal(out.codes, q.encode(z))
    torch.testing.assert_close(out.quantized, q.decode(out.codes), atol=1e-5, rtol=0)


def test_eval_decode_matches_under_no_grad_and_grad():
    q = SimVQ(D, K, seed=1).eval()
    codes = torch.randint(0, K, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cached = q.decode(codes)
    torch.testing.assert_close(q.decode(codes), cached, atol=1e-6, rtol=0)


# -- SimVQ's learned map -------------------------------------------------------------------
def test_projection_gets_gradient_every_step():
    q = SimVQ(D, K, seed=0).train()
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    for step in range(5):
        opt.zero_grad()
        q(latents(seed=step, scale=3.0)).loss.backward()
        assert q.proj.weight.grad is not None and q.proj.weight.grad.abs().sum() > 0
        assert q.proj.bias.grad.abs().sum() > 0
        assert q.base_codebook.grad is None  # frozen
        opt.step()


def test_lookup_paths_agree_in_value_and_gradient():
    # Batches with more frames than codes project the whole codebook, smaller ones the rows.
    q = SimVQ(D, K, seed=0, train_codebook=True).train()
    codes = torch.randint(0, K, (3, 2 * K), generator=torch.Generator().manual_seed(0))
    g = torch.randn(3, 2 * K, D)
    (q.lookup(codes) * g).sum().backward()
    grads = [p.grad.clone() for p in (q.proj.weight, q.proj.bias, q.base_codebook)]
    q.zero_grad()
    rows = torch.cat([q.lookup(codes[i, j:j + K // 2]) for i in range(3) for j in range(0, 2 * K, K // 2)])
    (rows * g.reshape(-1, D)).sum().backward()
    for before, p in zip(grads, (q.proj.weight, q.proj.bias, q.base_codebook), strict=True):
        torch.testing.assert_close(p.grad, before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rows.reshape(3, 2 * K, D), q.lookup(codes), rtol=0, atol=1e-6)


def test_one_step_moves_every_simvq_code_but_only_selected_vq_codes():
    z = latents(b=1, t=5, scale=3.0)
    for q, whole in ((SimVQ(D, 64, seed=0), True), (VectorQuantizer(D, 64, seed=0), False)):
        q.train()
        before = q.codebook().clone()
        opt = torch.optim.SGD(q.parameters(), lr=0.1)
        out = q(z)
        out.loss.backward()
        opt.step()
        moved = (q.codebook() - before).abs().sum(dim=1) > 0
        if whole:
            assert moved.all()
        else:
            selected = torch.zeros(64, dtype=torch.bool)
            selected[out.codes.unique()] = True
            assert torch.equal(moved, selected) and 0 < int(selected.sum()) <= 5


def test_eval_cache_follows_optimiser_steps_and_loading():
    q = SimVQ(D, K, seed=0).eval()
    first = q.codebook()
    assert q.codebook() is first  # cached while nothing changes
    opt = torch.optim.SGD(q.parameters(), lr=0.5)
    q(latents(scale=3.0)).loss.backward()  # eval mode with grad enabled still trains W
    opt.step()
    stepped = q.codebook()
    assert not torch.allclose(stepped, first)
    torch.testing.assert_close(stepped, q._project_all())

    other = SimVQ(D, K, seed=0)
    with torch.no_grad():
        other.proj.weight.mul_(-2.0)
    q.load_state_dict(other.state_dict())
    torch.testing.assert_close(q.codebook(), other._project_all())
    z = latents(seed=5)
    assert torch.equal(q.encode(z), other.eval().encode(z))


def test_fingerprint_mismatch_raises():
    with pytest.raises(CodebookMismatchError) as info:
        SimVQ(D, K, seed=0).load_state_dict(SimVQ(D, K, seed=1).state_dict())
    assert isinstance(info.value, SimVQError) and isinstance(info.value, ValueError)
    ours = ResidualQuantizer([SimVQ(D, K, seed=0), SimVQ(D, K, seed=1)])
    theirs = ResidualQuantizer([SimVQ(D, K, seed=0), SimVQ(D, K, seed=2)])
    with pytest.raises(CodebookMismatchError, match=r"at stages\.1:"):
        ours.load_state_dict(theirs.state_dict())
    SimVQ(D, K, seed=4).load_state_dict(SimVQ(D, K, seed=4).state_dict())  # same seed loads


def test_state_dict_holds_no_frozen_codebook():
    q = SimVQ(16, 512, seed=0)
    state = q.state_dict()
    assert set(state) == {"proj.weight", "proj.bias", "codebook_fingerprint", "initialized"}
    assert all(v.numel() < 512 * 16 for v in state.values())
    assert "base_codebook" in SimVQ(16, 512, train_codebook=True).state_dict()


def test_residual_simvq_stage_seeds():
    r = residual_simvq(3, seed=7)
    for i, stage in enumerate(r.stages):
        assert torch.equal(stage.base_codebook, frozen_codebook(K, D, 7 + i))


# -- search ---------------------------------------------------------------------------------
def test_chunked_search_equals_brute_force(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x, cb = torch.randn(300, D, generator=gen), torch.randn(1000, D, generator=gen)
    expected = brute_force(x, cb)
    sizes = []
    real_mm = torch.mm

    def mm(a, b, out=None):
        sizes.append(a.shape[0] * b.shape[1])
        return real_mm(a, b, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    for block in (50, 333, 4096, 2**24):  # 50 and 333: many N and K chunks, ragged ends
        sizes.clear()
        assert torch.equal(nearest_codes(x, cb, max_block_elements=block), expected)
        assert max(sizes) <= block and (block > 300 * 1000 or len(sizes) > 1)
    # One distance at a time.
    assert torch.equal(nearest_codes(x[:20], cb[:30], max_block_elements=1), brute_force(x[:20], cb[:30]))


def test_search_across_codebook_chunk_boundaries(monkeypatch):
    gen = torch.Generator().manual_seed(1)
    x, cb = torch.randn(200, D, generator=gen), torch.randn(200, D, generator=gen)
    cb[130] = cb[10]  # a tie across chunks resolves to the first index, as argmin does
    x[0] = cb[10]
    monkeypatch.setattr(search_module, "MAX_CODEBOOK_CHUNK", 64)
    codes = nearest_codes(x, cb)
    assert torch.equal(codes, brute_force(x, cb)) and int(codes[0]) == 10


def test_search_beyond_65536_codes():
    gen = torch.Generator().manual_seed(2)
    k = search_module.MAX_CODEBOOK_CHUNK + 100
    cb = torch.randn(k, 4, generator=gen)
    x = torch.cat([cb[[5, 65535, 65536, 65540, k - 1]], torch.randn(27, 4, generator=gen)])
    codes = nearest_codes(x, cb, max_block_elements=2**18)
    assert codes[:5].tolist() == [5, 65535, 65536, 65540, k - 1]
    assert torch.equal(codes, brute_force(x, cb))


def test_search_runs_in_float32_under_bf16_autocast(monkeypatch):
    seen = []

    def spy(real):
        def call(*args, **kwargs):
            seen.extend(a.dtype for a in args if isinstance(a, torch.Tensor))
            return real(*args, **kwargs)
        return call

    for name in ("mm", "addmm", "matmul"):  # whichever product the search uses
        monkeypatch.setattr(torch, name, spy(getattr(torch, name)))
    # Codes 1e-3 apart: bfloat16 (8 bits of mantissa) cannot tell them apart, float32 can.
    cb = torch.zeros(2, D)
    cb[0, 0], cb[1, 0] = 1.0, 1.001
    x = torch.zeros(1, D)
    x[0, 0] = 1.0009
    q = SimVQ(D, K, seed=0).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert int(nearest_codes(x, cb)[0]) == 1
        out = q(latents())
    assert seen and all(dt == torch.float32 for dt in seen)
    assert torch.equal(out.codes, q.encode(latents()))


# -- masks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["simvq", "vq", "ema", "residual"])
def test_mask_excludes_padded_frames(kind):
    qa, qb = make(kind).train(), make(kind).train()
    qb.load_state_dict(qa.state_dict())
    z = latents(b=2, t=10, scale=2.0)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    z_padded = z.clone()
    z_padded[1, :, 6:] = 1e3  # garbage must not reach losses, metrics or EMA statistics
    valid = torch.cat([z[0], z[1, :, :6]], dim=1).unsqueeze(0)  # [1, d, 16], the real frames only
    out = qa(z_padded, mask=mask)
    ref = qb(valid)
    torch.testing.assert_close(out.loss, ref.loss)
    torch.testing.assert_close(out.codebook_loss, ref.codebook_loss)
    for key in ref.metrics:
        torch.testing.assert_close(out.metrics[key], ref.metrics[key])
    for (name, a), (_, b) in zip(qa.state_dict().items(), qb.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    # An integer 0/1 mask means the same as a bool one.
    qa.eval()
    torch.testing.assert_close(qa(z_padded, mask=mask.long()).loss, qa(z_padded, mask=mask).loss)


# -- residual --------------------------------------------------------------------------------
def test_residual_dropout_uses_per_example_stages():
    n_q, b = 4, 24
    q = residual_simvq(n_q, quantizer_dropout=1.0).train()
    seen_masks = {}

    def hook(index):
        def record(module, args, kwargs, output):
            seen_masks[index] = kwargs["mask"]
        return record

    for i, stage in enumerate(q.stages):
        stage.register_forward_hook(hook(i), with_kwargs=True)
    z = latents(b=b, t=6)
    with pytest.raises(ValueError, match="explicit generator"):
        q(z)
    out = q(z, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(q(z, generator=torch.Generator().manual_seed(0)).quantized, out.quantized)
    assert out.codes.shape == (b, n_q, 6)
    assert torch.equal(out.codes, q.encode(z))  # every stage's codes are returned
    used = []
    for i in range(b):
        matches = [m for m in range(1, n_q + 1)
                   if torch.allclose(out.quantized[i:i + 1], q.decode(out.codes[i:i + 1, :m]), atol=1e-5)]
        assert len(matches) == 1
        used.append(matches[0])
    assert len(set(used)) > 1
    for stage_index, stage_mask in seen_masks.items():
        expected = torch.tensor([m > stage_index for m in used])[:, None].expand(b, 6)
        assert torch.equal(stage_mask, expected)
    q.eval()
    assert torch.allclose(q(z).quantized, q.decode(q.encode(z)), atol=1e-5)  # no dropout in eval


def test_residual_decode_with_fewer_codebooks():
    q = residual_simvq(3).eval()
    z = latents()
    codes = q.encode(z)
    two = q.decode(codes[:, :2])
    torch.testing.assert_close(two, q.stages[0].decode(codes[:, 0]) + q.stages[1].decode(codes[:, 1]))
    assert torch.equal(q.encode(z, n_q=2), codes[:, :2])
    out = q(z, n_q=2)
    assert out.codes.shape == (2, 2, 12)
    # Each stage codes what the previous left, so more stages reconstruct better.
    errors = [(q.decode(codes[:, :n]) - z).pow(2).mean() for n in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2]


# -- EMA -------------------------------------------------------------------------------------
def test_ema_codebook_moves_towards_data():
    q = EMAVectorQuantizer(D, K, decay=0.8, seed=0).train()
    centre = torch.full((D,), 2.0)
    z = centre.view(1, D, 1) + 0.01 * latents(b=4, t=16)
    distance_before = (q.codebook() - centre).norm(dim=1).min()
    for _ in range(30):
        q(z)
    assert (q.codebook() - centre).norm(dim=1).min() < 0.1 * distance_before


# -- errors ----------------------------------------------------------------------------------
def test_invalid_inputs_raise_value_error():
    q, r = SimVQ(D, K), residual_simvq(2)
    bad_calls = [
        lambda: q(torch.randn(2, D)),  # not [B, d, T]
        lambda: q(torch.randn(2, D + 1, 4)),
        lambda: q.encode(torch.randn(2, D + 1, 4)),
        lambda: q(torch.randn(2, D, 4), mask=torch.ones(2, 5, dtype=torch.bool)),
        lambda: q(torch.randn(2, D, 4), mask=torch.full((2, 4), 0.5)),
        lambda: q.decode(torch.tensor([[0, K]])),
        lambda: q.decode(torch.tensor([[-1, 0]])),
        lambda: q.decode(torch.tensor([[0.0, 1.0]])),  # float codes
        lambda: q.decode(torch.zeros(2, 2, 2, dtype=torch.long)),
        lambda: r(torch.randn(2, D + 1, 4)),
        lambda: r(torch.randn(2, D, 4), n_q=3),
        lambda: r.decode(torch.zeros(2, 4, dtype=torch.long)),
        lambda: r.decode(torch.zeros(2, 3, 4, dtype=torch.long)),  # more codebooks than stages
        lambda: r.decode(torch.zeros(2, 0, 4, dtype=torch.long)),
        lambda: nearest_codes(torch.randn(3, D), torch.randn(4, D + 1)),
        lambda: ResidualQuantizer([]),
        lambda: residual_simvq(2, quantizer_dropout=1.5),
        lambda: SimVQ(D, 1),
        lambda: QuantizerConfig(kind="nope"),
    ]
    for call in bad_calls:
        with pytest.raises(ValueError):
            call()


# -- usage tracker ---------------------------------------------------------------------------
def test_tracker_counts_utilization_and_perplexity():
    t = CodeUsageTracker(8)
    assert t.utilization() == 0.0 and t.perplexity() == 1.0 and t.total() == 0
    t.update(torch.tensor([[0, 1], [1, 1]]))
    t.update(torch.tensor([2, 3]))
    assert t.counts().tolist() == [1, 3, 1, 1, 0, 0, 0, 0]
    assert t.utilization() == pytest.approx(4 / 8) and t.total() == 6
    t.reset()
    t.update(torch.arange(8).repeat(3))
    assert t.utilization() == 1.0 and t.perplexity() == pytest.approx(8.0)
    t.update(torch.tensor([[[0, 7]], [[1, 7]]]), mask=torch.tensor([[True, False], [True, True]]))
    assert t.counts().tolist() == [4, 4, 3, 3, 3, 3, 3, 4]


def test_tracker_window_evicts_old_steps():
    t = CodeUsageTracker(6, window=2)
    t.update(torch.tensor([0, 0, 1]))
    t.update(torch.tensor([2]))
    t.update(torch.tensor([2, 3]))
    assert t.counts().tolist() == [0, 0, 2, 1, 0, 0]
    assert t.utilization() == pytest.approx(2 / 6)
    t.update(torch.tensor([], dtype=torch.long))
    t.update(torch.tensor([], dtype=torch.long))
    assert t.total() == 0 and t.utilization() == 0.0 and t.n_updates == 5


def test_tracker_dead_codes_and_uniform_ceiling():
    t = CodeUsageTracker(4, window=2)
    assert t.dead_codes(3) == 4 and t.uniform_ceiling() == 0.0
    t.update(torch.tensor([0, 1]))
    t.update(torch.tensor([1]))
    t.update(torch.tensor([2]))
    # last used: code 0 at update 1, code 1 at 2, code 2 at 3, code 3 never
    assert [t.dead_codes(n) for n in (1, 2, 3, 10)] == [3, 2, 1, 1]
    # the window holds updates 2 and 3: two frames of four codes
    assert t.total() == 2 and t.uniform_ceiling() == pytest.approx(1 - 0.75**2)
    resumed = CodeUsageTracker(4, window=2)
    resumed.load_state_dict(t.state_dict())
    for tracker in (t, resumed):
        tracker.update(torch.tensor([3]))
    assert resumed.dead_codes(2) == t.dead_codes(2) == 2
    big = CodeUsageTracker(1000)
    big.update(torch.zeros(3000, dtype=torch.long))
    assert big.uniform_ceiling() == pytest.approx(0.95, abs=0.01)  # 3 K frames: 95% at best
    with pytest.raises(ValueError):
        t.dead_codes(0)


def test_tracker_reduces_with_given_function_and_resumes():
    calls = []

    def fake_reduce(counts):  # three processes that saw the same codes
        calls.append(counts.shape)
        return counts * 3

    t = CodeUsageTracker(4, window=3, reduce_fn=fake_reduce)
    t.update(torch.tensor([1, 2, 2]))
    assert calls == [(4,)] and t.counts().tolist() == [0, 3, 6, 0]
    resumed = CodeUsageTracker(4, window=3)
    resumed.load_state_dict(t.state_dict())
    for tracker in (t, resumed):
        for codes in ([0], [0], [0]):
            tracker.update(torch.tensor(codes))
    assert resumed.counts().tolist() == [3, 0, 0, 0] and t.counts().tolist() == [9, 0, 0, 0]
    with pytest.raises(ValueError):
        CodeUsageTracker(4, window=2).load_state_dict(t.state_dict())
    with pytest.raises(ValueError):
        CodeUsageTracker(4, reduce_fn=lambda c: c[:2]).update(torch.tensor([1]))


@pytest.mark.parametrize("window", [3, None])
def test_tracker_round_trips_through_safetensors(tmp_path, window):
    from safetensors.torch import load_file, save_file

    gen = torch.Generator().manual_seed(0)
    t = CodeUsageTracker(16, window=window)
    for _ in range(5):
        t.update(torch.randint(0, 16, (7,), generator=gen))
    save_file(t.to_tensors("0."), str(tmp_path / "usage.safetensors"))
    back = CodeUsageTracker(16, window=window)
    back.load_tensors(load_file(str(tmp_path / "usage.safetensors")), "0.")
    assert back.counts().tolist() == t.counts().tolist() and back.n_updates == 5
    assert back.dead_codes(2) == t.dead_codes(2) and back.perplexity() == t.perplexity()
    for _ in range(4):  # the window keeps sliding as it would have: old steps drop out of both
        codes = torch.randint(0, 16, (7,), generator=gen)
        t.update(codes)
        back.update(codes)
    assert back.counts().tolist() == t.counts().tolist() and back.dead_codes(3) == t.dead_codes(3)
    empty = CodeUsageTracker(16, window=window)
    empty.load_tensors(CodeUsageTracker(16, window=window).to_tensors())
    assert empty.total() == 0 and empty.dead_codes(1) == 16
    with pytest.raises(ValueError, match="K=16"):
        CodeUsageTracker(8, window=window).load_tensors(t.to_tensors())


def test_tracker_rejects_bad_codes():
    t = CodeUsageTracker(4)
    for bad in (torch.tensor([4]), torch.tensor([-1]), torch.tensor([0.5])):
        with pytest.raises(ValueError):
            t.update(bad)
    with pytest.raises(ValueError):
        t.update(torch.tensor([[1, 2]]), mask=torch.tensor([True]))
    with pytest.raises(ValueError):
        CodeUsageTracker(4, window=0)


def _tracker_worker(rank: int, world: int, init_file: str, results) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        t = CodeUsageTracker(4)
        t.update(torch.tensor([rank, rank]))  # rank 0 uses code 0, rank 1 code 1
        results[rank] = t.counts().tolist()
    finally:
        torch.distributed.destroy_process_group()


def test_tracker_all_reduces_across_processes(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_tracker_worker, args=(2, str(tmp_path / "pg"), results), nprocs=2, join=True)
        assert results[0] == results[1] == [2, 2, 0, 0]
