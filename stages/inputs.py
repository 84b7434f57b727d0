"""Stage inputs: one fingerprint per input (data.source, heldout.source, model.name): a Hub id and its
revision, or a local path and the hash of its content. It runs on every `dvc repro`; the stages that
read an input depend on its fingerprint, so they re-run exactly when that input changes."""
from squad_ft.inputs import INPUTS, describe, fingerprint, load_hash_cache, save_hash_cache
from squad_ft.params import load_params
from squad_ft.stage import atomic_output, run_stage, stage_arguments, write_json


def main() -> None:
    paths = stage_arguments(__doc__.splitlines()[0], "out")
    params = load_params()
    cache = load_hash_cache()
    for name, (section, key, _) in INPUTS.items():
        found = fingerprint(params, name, cache)
        with atomic_output(paths.out / f"{name}.json") as out:
            write_json(out, found)
        print(f"{section}.{key}: {describe(found)}")
    save_hash_cache(cache)


if __name__ == "__main__":
    run_stage(main)
