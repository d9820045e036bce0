# make demo: set up (once) and run the quickstart (train + evaluate on synthetic galaxies)
# make test: set up (once) and run the test suite
PY := .venv/bin/python

.PHONY: setup demo test
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/train_net.py --config-file configs/quickstart.yaml --resume

test: setup
	$(PY) -m pytest -q tests
