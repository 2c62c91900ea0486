"""benchmarks.peers: our fast networks side by side with pytorch/examples' TransformerNet."""

import pytest

from benchmarks import peers


@pytest.mark.slow
def test_peers_suite_times_every_network_and_precision():
    result = peers.run_peers_suite(size=32, widths=(0.25,), num_styles=3, warmup=0, repeats=2)
    rows = result.tables["peers"].rows
    ours = [(r["network"], r["width"], r["precision"]) for r in rows if r["network"] != "pytorch/examples"]
    assert ours == [("single", 0.25, "float32"), ("single", 0.25, "bfloat16"),
                    ("multi", 0.25, "float32"), ("multi", 0.25, "bfloat16")]
    for row in rows:
        assert row["best_s"] <= row["median_s"]
    torch_present = peers.torch_transformer_net() is not None
    assert any(r["network"] == "pytorch/examples" for r in rows) == torch_present
    assert ("PyTorch is not installed" in " ".join(result.notes)) != torch_present


def test_peer_network_is_the_full_width_johnson_architecture():
    network = peers.torch_transformer_net()
    if network is None:
        pytest.skip("PyTorch is not installed (pip install torch); the peer network cannot be built")
    import torch

    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128] + [128] * 10 + [64, 32, 3]
    assert network(torch.zeros(1, 3, 32, 48)).shape == (1, 3, 32, 48)
