"""The public names, importable without torch: the CLI's help lists them and must answer at once."""
USER_NORMS = ("bn", "gn", "ln")
ARCH_NAMES = ("s8", "s8-reference-ln", "convmixer-s16", "convmixer-fr32", "convmixer-hr2")
# Every built-in norm (normlab.norms documents each); a user's own norm is a package.module:factory spec.
NORMS = ("bn", "gn", "ln", "in", "ln2d", "rms", "gn-ws", "brn", "frn", "evonorm-s0", "none")
# torch.compile modes of `normlab train --compile` (normlab.devices.resolve_compile decides auto)
COMPILE_MODES = ("auto", "on", "off")
