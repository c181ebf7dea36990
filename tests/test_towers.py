"""The image tower: packaged ImageNet weights, frozen BatchNorm, and pooled stage features."""

from __future__ import annotations

import torch

from memegap.nets.towers import EfficientNetLite0


def test_pooled_stages_are_appended_to_the_head_features():
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    plain, staged = EfficientNetLite0(), EfficientNetLite0(pool_stages=True)
    plain.eval(), staged.eval()
    with torch.no_grad():
        head, features = plain(images), staged(images)
        timm_head = plain.backbone((images - 0.5) / 0.5)
        # stage 0 by hand: the stem, then the first block, averaged over the 32×32 positions
        stage0 = staged.backbone.blocks[0](staged.backbone.bn1(staged.backbone.conv_stem((images - 0.5) / 0.5)))
    assert plain.output_dim == 1280 and staged.output_dim == 1280 + 16 + 24 + 40 + 112 + 320
    assert features.shape == (3, staged.output_dim)
    torch.testing.assert_close(head, timm_head)  # our stage loop computes what timm's forward does
    torch.testing.assert_close(features[:, :1280], head)  # the head features come first, unchanged
    torch.testing.assert_close(features[:, 1280:1296], stage0.mean(dim=(2, 3)))


def test_frozen_batchnorm_stays_in_eval_mode_when_training():
    tower = EfficientNetLite0(pool_stages=True).train()
    norms = [m for m in tower.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    assert tower.backbone.conv_stem.training


def test_default_image_adapters_cover_every_pointwise_conv():
    from memegap.nets.adapters import add_dora

    tower = add_dora(EfficientNetLite0(pretrained=False), EfficientNetLite0.default_adapter_targets, rank=4, alpha=8.0)
    adapted = {name for name, module in tower.named_modules() if hasattr(module, "lora_A")}
    pointwise = {name for name, module in tower.named_modules() if name.endswith((".conv_pw", ".conv_pwl"))}
    assert len(pointwise) == 31 and adapted == pointwise  # 16 blocks: 1 + 15 × 2 pointwise convs


def test_the_text_tower_loads_without_a_pooler_and_its_output_is_unchanged():
    from memegap.nets.towers import MiniLMText

    plain, pooled = MiniLMText(), MiniLMText(with_pooler=True)
    assert plain.encoder.pooler is None and pooled.encoder.pooler is not None
    plain.eval(), pooled.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(["A picture of a cat"]), pooled(["A picture of a cat"]))


def test_a_hub_id_offline_fails_at_once_with_a_message(monkeypatch):
    """Unreachable hub: one probe, no retry, then the message; HF_HUB_OFFLINE=1: no network call at all."""
    import socket
    import threading

    import pytest

    from memegap.errors import UserError
    from memegap.nets.towers import MiniLMText

    connections = []
    with socket.socket() as hub:  # a loopback "hub" that counts connections and hangs up on each
        hub.bind(("127.0.0.1", 0))
        hub.listen()
        hub.settimeout(0.2)

        def count_and_hang_up(stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    connection, _ = hub.accept()
                except OSError:
                    continue
                connections.append(1)
                connection.close()

        stop = threading.Event()
        counter = threading.Thread(target=count_and_hang_up, args=(stop,), daemon=True)
        counter.start()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{hub.getsockname()[1]}")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        try:
            with pytest.raises(UserError, match=r"model\.text_tower\.model_dir=sentence-transformers/all-MiniLM-L12-v2: .*cannot be reached"):
                MiniLMText(model_dir="sentence-transformers/all-MiniLM-L12-v2")
            assert len(connections) == 1  # one probe, never retried
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
                MiniLMText(model_dir="sentence-transformers/all-MiniLM-L12-v2")
            assert len(connections) == 1  # offline: no call at all
        finally:
            stop.set()
            counter.join()
    with pytest.raises(UserError, match="no such directory"):
        MiniLMText(model_dir="./models/minilm")


def test_the_offline_advice_offers_a_packaged_model_only_where_there_is_one(monkeypatch):
    """MiniLM ships in a pip package (leave the key unset); CLIP does not (the advice to leave
    model.name_or_path unset pointed at nothing, and null is refused)."""
    import pytest

    from memegap.errors import UserError
    from memegap.nets.hub import local_or_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as text_tower:
        local_or_hub("sentence-transformers/all-MiniLM-L12-v2", "model.text_tower.model_dir", packaged=True)
    with pytest.raises(UserError) as clip:
        local_or_hub("openai/clip-vit-large-patch14", "model.name_or_path")
    assert str(text_tower.value).endswith("or leave model.text_tower.model_dir unset for the packaged model")
    assert str(clip.value).endswith("Offline, pass a local model directory (model.name_or_path=<folder>)") and "unset" not in str(clip.value)
