"""Experiment-only recipe presets, each as (the public preset it changes, the changes). Plain data:
:func:`normlab.recipes.all_recipes` builds them."""

_MUON_POINTWISE = {"optimizer": "muon", "muon_lr": 0.1, "muon_weight_decay": 0.01}

PRESETS: dict[str, tuple[str, dict]] = {
    # random translation by up to 2 px instead of 4: better on an 8-epoch proxy, not over 20 epochs
    "fast-crop2": ("fast", {"crop_pad": 2}),
    # weight averaging over about one epoch: within a seed's noise of the raw weights at 20 epochs
    "fast-ema": ("fast", {"ema_epochs": 1.0}),
    "fast-b128-ema": ("fast-b128", {"ema_epochs": 1.0}),
    # Muon on the pointwise convs only: beaten by Muon on every conv (the shipped presets)
    "fast-b128-muon": ("fast-b128", _MUON_POINTWISE),
    "fast-muon": ("fast", _MUON_POINTWISE),
    # BN's Muon-on-every-conv recipe at Muon's default peak 0.1; 0.2 (fast-muon-convs-mlr0.2) is better
    "fast-muon-convs": ("fast", {**_MUON_POINTWISE, "muon_scope": "convs"}),
}
