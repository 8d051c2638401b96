"""The papers' experiments as named configurations (settings from shared facts: Frankle & Carbin 2019,
Frankle et al. 2020, Greydanus 2020). Any field can still be overridden on the command line."""

from __future__ import annotations

from dataclasses import dataclass, replace

from lth.config import (
    DataConfig,
    EnvConfig,
    ImpConfig,
    LotteryConfig,
    ModelConfig,
    PpoConfig,
    PruneConfig,
    RlConfig,
    TrainConfig,
)
from lth.errors import ConfigError


@dataclass(frozen=True)
class Preset:
    config: ImpConfig | RlConfig
    """Any experiment's config; `lth <cmd> --preset X` takes the sections the command's experiment shares."""
    description: str


def _exp(dataset: str, model: ModelConfig, train: TrainConfig, prune: PruneConfig, levels: int,
         augment: bool = False, **lottery) -> ImpConfig:
    return ImpConfig(data=DataConfig(dataset=dataset, augment=augment), model=model, train=train,
                            prune=prune, lottery=LotteryConfig(levels=levels, **lottery))


# Frankle & Carbin: LeNet and Conv-2/4/6 pruned layer-wise (output layer at half the fc rate), Adam,
# batch 60, evaluation every 100 iterations.
_LAYERWISE_FC = PruneConfig(strategy="layerwise", rate=0.2, output_rate=0.1)


def _conv(name: str, lr: float, budget: str, conv_rate: float, dropout: float = 0.0) -> ImpConfig:
    return _exp("cifar10", ModelConfig(name=name, dropout=dropout),
                TrainConfig(optimizer="adam", lr=lr, batch_size=60, budget=budget, eval_every="100it"),
                replace(_LAYERWISE_FC, conv_rate=conv_rate), levels=20)


# VGG-19 and ResNet-20: SGD with momentum, global pruning of the convolutions; at lr 0.1 they need warmup
# to give winning tickets at iteration 0 (facts sheet).
_VGG19 = _exp(
    "cifar10", ModelConfig(name="vgg19"),
    TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=64, budget="160ep",
                warmup="10000it", schedule="multistep", milestones=("80ep", "120ep"), eval_every="1ep"),
    PruneConfig(strategy="global", rate=0.2, exclude=("fc.weight",)), levels=20, augment=True)
_RESNET20 = _exp(
    "cifar10", ModelConfig(name="resnet20"),
    TrainConfig(optimizer="sgd", lr=0.03, momentum=0.9, weight_decay=1e-4, batch_size=128, budget="30000it",
                warmup="20000it", schedule="multistep", milestones=("20000it", "25000it"), eval_every="500it"),
    PruneConfig(strategy="global", rate=0.2, exclude=("fc.weight", "*shortcut*")), levels=20, augment=True)

PRESETS: dict[str, Preset] = {
    # Greydanus prunes this MLP to ~99% sparsity, where tickets separate from their controls; 30% per level
    # (output 15%) reaches P_m ≈ 1.9% in 12 levels, which keeps the default run to a few minutes.
    "mnist1d_mlp": Preset(
        _exp("mnist1d", ModelConfig(name="mnist1d_mlp", hidden=(500, 500)),
             TrainConfig(optimizer="adam", lr=2e-2, batch_size=100, budget="1500it", eval_every="50it"),
             PruneConfig(strategy="layerwise", rate=0.3, output_rate=0.15), levels=12),
        "MNIST-1D lottery experiment (Greydanus): MLP 40-500-500-10, Adam 2e-2, batch 100, 1,500 steps, "
        "layer-wise 30% (output 15%) to P_m 1.9%. The default: runs offline in minutes."),
    "lenet_300_100_mnist": Preset(
        _exp("mnist", ModelConfig(name="lenet_300_100"),
             TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, budget="50000it", eval_every="100it"),
             _LAYERWISE_FC, levels=20),
        "Frankle & Carbin Fig. 3/4: LeNet-300-100 on MNIST, Adam 1.2e-3, batch 60, 50K iterations, "
        "layer-wise 20% (output 10%)."),
    "conv2_cifar10": Preset(_conv("conv2", 2e-4, "20000it", 0.1),
                            "Frankle & Carbin Fig. 5: Conv-2, Adam 2e-4, 20K it; conv 10%, fc 20%, output 10%."),
    "conv4_cifar10": Preset(_conv("conv4", 3e-4, "25000it", 0.1),
                            "Frankle & Carbin Fig. 5: Conv-4, Adam 3e-4, 25K it; conv 10%, fc 20%, output 10%."),
    "conv6_cifar10": Preset(_conv("conv6", 3e-4, "30000it", 0.15),
                            "Frankle & Carbin Fig. 5: Conv-6, Adam 3e-4, 30K it; conv 15%, fc 20%, output 10%."),
    "conv2_dropout_cifar10": Preset(_conv("conv2", 3e-4, "60000it", 0.1, dropout=0.5),
                                    "Frankle & Carbin Fig. 6: Conv-2 with dropout 0.5, Adam 3e-4, 60K it."),
    "conv4_dropout_cifar10": Preset(_conv("conv4", 2e-4, "75000it", 0.1, dropout=0.5),
                                    "Frankle & Carbin Fig. 6: Conv-4 with dropout 0.5, Adam 2e-4, 75K it."),
    "conv6_dropout_cifar10": Preset(_conv("conv6", 2e-4, "90000it", 0.15, dropout=0.5),
                                    "Frankle & Carbin Fig. 6: Conv-6 with dropout 0.5, Adam 2e-4, 90K it."),
    "vgg19_cifar10": Preset(_VGG19, "Frankle & Carbin Fig. 7: VGG-19 (BN), SGD 0.1 with 10K-it warmup, "
                                    "160 epochs, batch 64; global 20% of conv, fc not pruned."),
    "resnet20_cifar10": Preset(_RESNET20, "Frankle & Carbin Fig. 8: ResNet-20, SGD 0.03 with 20K-it warmup, "
                                          "30K it, batch 128; global 20% of conv, shortcut and fc not pruned."),
    "resnet20_cifar10_rewind": Preset(
        replace(_RESNET20, train=replace(_RESNET20.train, lr=0.1, warmup="0it"),
                lottery=replace(_RESNET20.lottery, rewind="500it")),
        "Frankle et al. 2020: ResNet-20 at lr 0.1 without warmup, rewinding to iteration 500."),
    # Tickets beyond image classifiers (issue 13; Yu et al. 2020). Budgets are cut to about 20 minutes of CPU
    # each on 2 cores (docs/lstm-mnist1d.md, docs/transformer-chars.md, docs/ppo-cartpole.md).
    "lstm_mnist1d_seq": Preset(
        _exp("mnist1d_seq", ModelConfig(name="lstm", width=128, layers=1),
             TrainConfig(optimizer="adam", lr=1e-2, batch_size=100, budget="1500it", eval_every="50it"),
             PruneConfig(strategy="layerwise", rate=0.5, output_rate=0.25), levels=6),
        "LSTM (1 layer, 128 units) on MNIST-1D read as 40 steps of 1 value, Adam 1e-2, batch 100, 1,500 steps; "
        "layer-wise 50% (head 25%) to P_m 1.9%, reset to θ_0."),
    "transformer_chars": Preset(
        _exp("chars", ModelConfig(name="transformer", width=128, layers=2, heads=4),
             TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, budget="600it", eval_every="50it"),
             PruneConfig(strategy="layerwise", rate=0.5, output_rate=0.25, embedding_rate=0.25), levels=5,
             rewind="30it"),
        "Pre-LayerNorm Transformer (2 blocks, 4 heads, width 128) as a character LM on Debian's fortunes-min "
        "(context 64), Adam 3e-3, batch 32, 600 steps; layer-wise 50% (embedding and head 25%) to P_m 4.2%, "
        "late rewinding to step 30."),
    "ppo_cartpole": Preset(
        RlConfig(prune=PruneConfig(strategy="layerwise", rate=0.5, output_rate=0.25),
                 lottery=LotteryConfig(levels=5, rewind="5120it")),
        "PPO (Stable-Baselines3, the zoo's CartPole-v1 settings, 102,400 steps) on CartPole-v1; policy and "
        "value networks 64-64 pruned layer-wise 50% (both heads 25%) to P_m 3.6%, late rewinding to step 5,120 "
        "(5%). Needs lth[rl]."),
    "ppo_acrobot": Preset(
        RlConfig(env=EnvConfig(id="Acrobot-v1", n_envs=16, eval_every="40960it"),
                 agent=PpoConfig(budget="204800it", n_steps=256, batch_size=256, n_epochs=4, lr=3e-4,
                                 schedule="constant", gamma=0.99, gae_lambda=0.94),
                 prune=PruneConfig(strategy="layerwise", rate=0.5, output_rate=0.25),
                 lottery=LotteryConfig(levels=5, rewind="8192it")),
        "PPO on Acrobot-v1 with the zoo's settings (16 environments, n_steps 256, 4 epochs, lr 3e-4) but 204,800 "
        "steps instead of 1M, and no observation normalization; pruning as ppo_cartpole. Needs lth[rl]."),
}


def get(name: str) -> ImpConfig:
    """The config of a preset, with its name recorded."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)} "
                          "(list them with `lth presets`)")
    return replace(PRESETS[name].config, preset=name)


def describe(name: str) -> str:
    c = PRESETS[name].config
    if isinstance(c, RlConfig):
        a = c.agent
        return (f"ppo on {c.env.id}; lr {a.lr:g}, {a.budget}; prune {c.prune.strategy} {c.prune.rate:g}; "
                f"{c.lottery.levels} levels, rewind {c.lottery.rewind}")
    t, p = c.train, c.prune
    prune = f"{p.strategy} {p.rate:g}"
    if p.conv_rate is not None:
        prune += f", conv {p.conv_rate:g}"
    if p.strategy == "layerwise":
        prune += f", out {p.output_rate if p.output_rate is not None else p.rate / 2:g}"
    return (f"{c.model.name} on {c.data.dataset}; {t.optimizer} lr {t.lr:g}, batch {t.batch_size}, "
            f"{t.budget}; prune {prune}; {c.lottery.levels} levels")
