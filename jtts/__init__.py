"""jtts: the JAX side. Whisper text ids -> EnCodec codebook tokens, trained and sampled in JAX.

The flow: a code store (`codec_bridge.format`) becomes batches (`data`); the model (`model`,
`layers`, `patterns`, `conditioning`) learns from them in the jitted steps (`train_step`,
`loss`, `optim`) that the loop (`trainer`) drives, writing the run directory (`rundir`,
`checkpoint`); the compiled decode loop (`decode`, picking tokens by `sampling`) turns text
into codes for `sampler`, which reads a `trained_run` and hands its codes to `codec_bridge`
(`codec_io`) to decode to audio. Never imports torch.
"""
