import torch

from vita_mini.audio.vq import VectorQuantizer, codebook_usage


def make_vq(k=8, d=4, **kw):
    vq = VectorQuantizer(k, d, **kw)
    vq.initialized.fill_(True)  # skip the first-batch init so the tests control the codebook
    vq.codebook.copy_(torch.randn(k, d))
    vq.ema_sum.copy_(vq.codebook)
    vq.ema_count.fill_(1.0)
    return vq


def test_codes_are_nearest_neighbours():
    vq = make_vq().eval()
    z = torch.randn(2, 5, 4)
    _, codes, _ = vq(z)
    brute = torch.cdist(z.reshape(-1, 4), vq.codebook).argmin(1).reshape(2, 5)
    assert torch.equal(codes, brute)


def test_straight_through_gradient_is_identity():
    vq = make_vq().eval()
    z = torch.randn(2, 5, 4, requires_grad=True)
    quantized, codes, _ = vq(z)
    assert torch.allclose(quantized, vq.codebook[codes])  # forward: the codebook entries
    weights = torch.randn(2, 5, 4)
    (quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)  # backward: as if quantization were the identity


def test_commitment_loss_pulls_encoder_toward_codebook():
    vq = make_vq(commitment=0.25).eval()
    z = torch.randn(1, 3, 4, requires_grad=True)
    _, codes, commit = vq(z)
    expected = 0.25 * ((z - vq.codebook[codes]) ** 2).mean()
    assert torch.allclose(commit, expected)


def test_ema_update_moves_entry_toward_assigned_mean():
    vq = make_vq(k=2, d=2, decay=0.9, dead_threshold=0.0)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vq.ema_sum.copy_(vq.codebook)
    z = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])  # both nearest to entry 0, mean (2, 2)
    vq.train()(z)
    # count 0.9 * 1 + 0.1 * 2 = 1.1; sum 0.9 * 0 + 0.1 * (4, 4) = (0.4, 0.4)
    assert torch.allclose(vq.ema_count, torch.tensor([1.1, 0.9]))
    total = vq.ema_count.sum()
    smoothed = (1.1 + vq.eps) / (total + 2 * vq.eps) * total
    assert torch.allclose(vq.codebook[0], torch.tensor([0.4, 0.4]) / smoothed)


def test_padding_does_not_move_the_codebook():
    vq = make_vq(k=2, d=2, decay=0.9, dead_threshold=0.0)
    before = vq.codebook.clone()
    z = torch.tensor([[[100.0, 100.0], [-100.0, -100.0]]])
    vq.train()(z, mask=torch.tensor([[False, False]]))
    assert torch.allclose(vq.codebook, before)


def test_dead_code_restart_moves_unused_entries_onto_batch_vectors():
    vq = make_vq(k=4, d=2, decay=0.5, dead_threshold=0.8)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]]))
    vq.ema_sum.copy_(vq.codebook)
    z = torch.randn(1, 16, 2) * 0.1  # all near entry 0: entries 1-3 get no vectors
    vq.train()(z)  # their counts fall to 0.5 < 0.8: restarted onto vectors of this batch
    batch = z.reshape(-1, 2)
    for k in (1, 2, 3):
        assert torch.cdist(vq.codebook[k:k + 1], batch).min() < 1e-6
    assert torch.all(vq.ema_count[1:] == 1.0)


def test_first_batch_initializes_codebook_from_data():
    vq = VectorQuantizer(4, 3)
    z = torch.randn(1, 10, 3) + 5.0
    vq.train()(z)
    assert bool(vq.initialized)
    assert torch.cdist(vq.codebook, z.reshape(-1, 3)).min(1).values.max() < 1.0


def test_codebook_usage():
    perplexity, used = codebook_usage(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert abs(perplexity - 4.0) < 1e-4 and used == 0.5
    perplexity, used = codebook_usage(torch.zeros(10, dtype=torch.long), 8)
    assert abs(perplexity - 1.0) < 1e-6 and used == 1 / 8
