"""`make demo`: the built-in end-to-end demo (filled in by the sampling issue)."""

PLAN = """jtts demo (not built yet). When complete, `make demo` will:
  1. speak a few hundred template sentences with eSpeak NG into a demo corpus,
  2. extract EnCodec codes with `python -m codec_bridge extract`,
  3. train the `small` config for a few minutes on the CPU with `python -m jtts.train`,
  4. synthesize three unseen sentences to demo/*.wav with `python -m jtts.sample`,
  5. write demo/report.png (loss curves and spectrograms)."""


def main() -> None:
    print(PLAN)


if __name__ == "__main__":
    main()
