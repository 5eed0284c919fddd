"""NVIDIA's StyleGAN2-ADA generator in Flax: the public names of the package.

    from palm_jax.models.stylegan2 import load_generator, init_generator, Generator

Modules, each importing only those above it in this list (no circles):
  `ops`      pure NHWC building blocks: FIR filters, modulated and up-sampling convolutions
  `network`  the linen modules (`Generator`, `GeneratorConfig`, mapping and synthesis)
  `handle`   `GeneratorHandle` (a module + its variables, jitted methods), `init_generator`
  `weights`  official weights ↔ handles: `load_generator`, `save_generator_npz`, converters

The old module paths `palm_jax.models.stylegan2_ops`, `..._handle` and `..._weights` are
deprecated aliases of `ops`, `handle` and `weights` (palm_jax/__init__.py).
"""
from palm_jax.models.stylegan2.handle import (GeneratorHandle, init_generator,
                                              init_variables)
from palm_jax.models.stylegan2.network import (NOISE_MODES, FullyConnected, Generator,
                                               GeneratorConfig, MappingNetwork,
                                               SynthesisBlock, SynthesisLayer,
                                               SynthesisNetwork, ToRGB)
from palm_jax.models.stylegan2.ops import (MODULATIONS, UP_IMPLS, choice_for_resolution,
                                           demodulation_coefficients, fir_filter_2d,
                                           modulated_conv2d, normalize_2nd_moment,
                                           up_conv_polyphase, up_conv_transpose,
                                           upsample_2x, validate_impls)
from palm_jax.models.stylegan2.weights import (PRETRAINED, expected_state_shapes,
                                               infer_init_kwargs, load_generator,
                                               read_state_dict, resolve_weights_path,
                                               save_generator_npz, state_to_variables,
                                               variables_to_state)

__all__ = [
    "MODULATIONS", "NOISE_MODES", "PRETRAINED", "UP_IMPLS", "FullyConnected", "Generator",
    "GeneratorConfig", "GeneratorHandle", "MappingNetwork", "SynthesisBlock",
    "SynthesisLayer", "SynthesisNetwork", "ToRGB", "choice_for_resolution",
    "demodulation_coefficients",
    "expected_state_shapes", "fir_filter_2d", "infer_init_kwargs", "init_generator",
    "init_variables", "load_generator", "modulated_conv2d", "normalize_2nd_moment",
    "read_state_dict", "resolve_weights_path", "save_generator_npz", "state_to_variables",
    "up_conv_polyphase", "up_conv_transpose", "upsample_2x", "validate_impls",
    "variables_to_state",
]
