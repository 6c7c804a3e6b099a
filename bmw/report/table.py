"""`bmw table`: print the variant table of the current workspace."""

from __future__ import annotations

from bmw.params import load_params
from bmw.report.collect import collect
from bmw.report.tables import variant_table


def main(argv: list[str] | None = None) -> None:
    params = load_params()
    print(variant_table(collect(list(params.variants))))


if __name__ == "__main__":
    main()
