"""model=clip_dora on a tiny random CLIP saved as a Hugging Face directory: exactly CLIP before training,
the offline tokenizer, the fine-tuning variants, training that lowers the loss, and the saved adapters
and merged model giving back the trained embeddings (also through memegap-eval)."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from transformers import CLIPModel

from memegap.errors import UserError
from memegap.eval import evaluate
from memegap.losses.contrastive import ContrastiveLoss
from memegap.metrics.retrieval import recall_at_k
from memegap.models.clip import ClipDualEncoder, ClipTokenizer, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from memegap.utils.trained_run import embed_split, set_up_data
from tests.conftest import MINI_OVERRIDES, compose_config


def clip_module(path, **settings) -> ClipDualEncoder:
    return ClipDualEncoder(ContrastiveLoss(), partial(torch.optim.AdamW, lr=1e-2), name_or_path=str(path), **settings)


def batch(n: int = 6, size: int = 32) -> dict:
    generator = torch.Generator().manual_seed(1)
    words = ["dog", "cat", "house", "tree", "car", "sun", "boat", "bird"]
    return {"image": torch.rand(n, 3, size, size, generator=generator), "text": [f"A picture of a {word}" for word in words[:n]], "image_id": torch.arange(n)}


@pytest.mark.parametrize("finetune", ["dora", "lora", "last_n", "full"])
def test_before_training_the_module_is_exactly_clip(tiny_clip, finetune):
    module = clip_module(tiny_clip, finetune=finetune).eval()
    reference = CLIPModel.from_pretrained(str(tiny_clip)).eval()
    inputs = batch()
    mean, std = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    ids = ClipTokenizer(str(tiny_clip), 77)(inputs["text"])
    with torch.no_grad():
        embeddings = module.embed(inputs)
        image = reference.get_image_features(pixel_values=(inputs["image"] - mean) / std)
        text = reference.get_text_features(input_ids=ids)
    image, text = (getattr(output, "pooler_output", output) for output in (image, text))
    torch.testing.assert_close(embeddings["image"], image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(embeddings["text"], text, rtol=1e-5, atol=1e-5)
    assert float(module.logit_scale.detach()) == pytest.approx(float(reference.logit_scale.detach()))  # CLIP's own temperature


def test_the_offline_tokenizer_is_clips_and_a_placeholder_is_refused(tiny_clip, tmp_path):
    tokenizer = ClipTokenizer(str(tiny_clip), 77)  # the directory has no tokenizer: open_clip's bundled BPE
    assert tokenizer.vocabulary_size == 49408
    ids = tokenizer(["a photo of a dog"])
    assert ids.shape == (1, 77) and ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 1929, 49407]  # OpenAI CLIP's ids
    (tmp_path / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(UserError, match="2 tokens: a placeholder"):
        ClipTokenizer(str(tmp_path), 77)


def test_a_hub_id_offline_fails_saying_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="hub .* cannot be reached"):
        clip_module("someone/clip-not-in-the-cache")


def test_the_variants_train_what_they_say(tiny_clip):
    def trainable(module):
        return {name for name, parameter in module.named_parameters() if parameter.requires_grad}

    dora = trainable(clip_module(tiny_clip))
    assert all("lora_" in name or "projection" in name for name in dora) and any("lora_magnitude" in name for name in dora)
    assert {name.split(".mlp.")[-1].split(".")[0] for name in dora if ".mlp." in name} == {"fc1", "fc2"}
    assert not any("lora_magnitude" in name for name in trainable(clip_module(tiny_clip, finetune="lora")))
    locked = trainable(clip_module(tiny_clip, lock_image_tower=True))
    assert locked and not any("vision_model" in name or "visual_projection" in name for name in locked)
    last = trainable(clip_module(tiny_clip, finetune="last_n", last_n=1))
    assert any("encoder.layers.1." in name for name in last) and not any("encoder.layers.0." in name for name in last)
    assert "clip.logit_scale" in trainable(clip_module(tiny_clip, finetune="full", train_logit_scale=True))
    with pytest.raises(UserError, match="model.finetune"):
        clip_module(tiny_clip, finetune="prefix")


def test_gradient_checkpointing_gives_the_same_gradients(tiny_clip):
    gradients = []
    for checkpointing in (False, True):
        module = clip_module(tiny_clip, finetune="full", gradient_checkpointing=checkpointing).train()
        embeddings = module.embed(batch())
        module.loss(embeddings["image"], embeddings["text"], module.logit_scale)["loss"].backward()
        gradients.append(module.clip.vision_model.encoder.layers[0].mlp.fc1.weight.grad.clone())
    torch.testing.assert_close(gradients[0], gradients[1])


def test_training_lowers_the_loss_and_the_saved_weights_give_the_trained_embeddings(tiny_clip, tmp_path):
    module = clip_module(tiny_clip, rank=4).train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    inputs = batch()
    losses = []
    for _ in range(15):
        embeddings = module.embed(inputs)
        loss = module.loss(embeddings["image"], embeddings["text"], module.logit_scale)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    module.eval()
    module.save_weights(tmp_path)
    with torch.no_grad():
        trained = module.embed(inputs)
        merged = clip_module(tmp_path / "clip_merged").eval().embed(inputs)
        adapters = clip_module(tiny_clip, adapter_path=str(tmp_path / "clip_adapters")).eval().embed(inputs)
        before = clip_module(tiny_clip).eval().embed(inputs)
    assert not torch.allclose(before["image"], trained["image"], atol=1e-3)
    for loaded in (merged, adapters):
        torch.testing.assert_close(loaded["image"], trained["image"], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(loaded["text"], trained["text"], rtol=1e-4, atol=1e-4)


def test_memegap_eval_of_a_merged_clip_measures_the_merged_weights(tiny_clip, tmp_path):
    """memegap-eval with model.name_or_path=<run>/clip_merged and no checkpoint gives the whole-split
    retrieval of the merged (trained) weights, computed here from their own embeddings of the test split."""
    module = clip_module(tiny_clip, rank=4).train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(5):
        embeddings = module.embed(batch())
        optimizer.zero_grad()
        module.loss(embeddings["image"], embeddings["text"], module.logit_scale)["loss"].backward()
        optimizer.step()
    module.save_weights(tmp_path)
    merged = tmp_path / "clip_merged"
    cfg = compose_config("eval.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "model=clip_dora", f"model.name_or_path={merged}", "logger=none"],
                         tmp_path / "eval")
    metrics = evaluate(cfg)
    datamodule = set_up_data(cfg)
    with torch.no_grad():
        embeddings, _ = embed_split(datamodule, clip_module(merged).eval(), "test")
    expected = recall_at_k(embeddings["image"], embeddings["text"], image_of_row=embeddings["image_id"])
    for key in ("text_to_image_R@1", "text_to_image_R@5", "image_to_text_R@1", "text_to_image_mean_rank", "image_to_text_mean_rank"):
        assert metrics[f"test/retrieval/{key}"] == pytest.approx(expected[key], abs=1e-6), key


def test_memegap_eval_of_a_dual_encoder_needs_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="needs ckpt_path"):
        evaluate(compose_config("eval.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none"], tmp_path / "eval2"))


def test_a_lightning_run_passes_the_adapter_check_and_saves_adapters_and_merged_model(tiny_clip, tmp_path):
    from memegap.train import train

    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "model=clip_dora", f"model.name_or_path={tiny_clip}",
                                        "logger=none", "test_before_fit=false", "+trainer.max_steps=3"], tmp_path / "run")
    train(cfg)  # the adapter-gradient check runs at the second optimiser step and raises if an adapter got none
    assert (tmp_path / "run" / "clip_adapters" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "clip_merged" / "config.json").is_file()
