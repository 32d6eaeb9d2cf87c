"""Training an EnCodec-architecture codec from scratch (``codec_bridge train``, ``export``):
the recipe and resumable training (`train`), the run directory's layout (`rundir`), its YAML
configs (``configs/``), crops of the corpus (`data`), losses (`losses`), quantizer k-means and
dead-code revival (`quantizer_init`) and the run's metrics and samples (`report`). The weights
file it writes belongs to `codec_bridge.codec_config`, which extraction and decoding read too."""
