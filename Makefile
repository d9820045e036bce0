# make demo: set up (once) and catalogue the 9 example SDSS galaxies with the shipped model
# make quickstart: set up (once) and train + evaluate the small detector on synthetic galaxies
# make test: set up (once) and run the test suite
PY := .venv/bin/python

.PHONY: setup demo quickstart test
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) tools/predict_catalog.py --model sdss_lite0 --input examples/sdss \
		--output output/examples/clumps.csv --contact-sheet output/examples/contact_sheet.jpg \
		--overwrite

quickstart: setup
	$(PY) tools/train_net.py --config-file configs/quickstart.yaml --resume

test: setup
	$(PY) -m pytest -q tests
