# Two commands that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# GitHub's published OpenAPI descriptions, which the GitHub emulator's answers and webhooks are validated against
# (tests/sandbox/test_github_openapi.py). The versions are pinned here and nowhere else.
OCTOKIT_OPENAPI := 23.0.2
OCTOKIT_OPENAPI_WEBHOOKS := 12.1.0
SPECS := .specs
SPECS_STAMP := $(SPECS)/.fetched-$(OCTOKIT_OPENAPI)-$(OCTOKIT_OPENAPI_WEBHOOKS)

.PHONY: demo test lint install clean specs fetch-specs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,clients]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/fragalysis-cd demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# two workers, each test file on one of them (module fixtures are made once); `make test ARGS="-n 0"` runs in one
test: lint specs
	$(BIN)/pytest -n 2 --dist loadfile $(ARGS)

# Without npm this says so and does nothing (the tests that need the descriptions skip with a reason); under CI
# (CI=true) a failed fetch fails, elsewhere (e.g. offline) it is reported and the tests skip.
specs:
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "specs: npm is not installed, so GitHub's OpenAPI descriptions are not fetched (their tests skip)"; \
	elif [ ! -f $(SPECS_STAMP) ]; then \
		$(MAKE) --no-print-directory fetch-specs || { [ "$$CI" != true ] && \
			echo "specs: fetching GitHub's OpenAPI descriptions failed (their tests skip)"; }; \
	fi

fetch-specs:
	rm -rf $(SPECS) && mkdir -p $(SPECS)/packages
	cd $(SPECS)/packages && npm pack --silent @octokit/openapi@$(OCTOKIT_OPENAPI) \
		@octokit/openapi-webhooks@$(OCTOKIT_OPENAPI_WEBHOOKS) >/dev/null
	tar -xzOf $(SPECS)/packages/octokit-openapi-$(OCTOKIT_OPENAPI).tgz package/generated/api.github.com.json \
		> $(SPECS)/api.github.com.json.part
	tar -xzOf $(SPECS)/packages/octokit-openapi-webhooks-$(OCTOKIT_OPENAPI_WEBHOOKS).tgz \
		package/generated/api.github.com.json > $(SPECS)/webhooks.api.github.com.json.part
	mv $(SPECS)/api.github.com.json.part $(SPECS)/api.github.com.json
	mv $(SPECS)/webhooks.api.github.com.json.part $(SPECS)/webhooks.api.github.com.json
	rm -rf $(SPECS)/packages
	touch $(SPECS_STAMP)

clean:
	rm -rf $(VENV) .prefect .sandbox $(SPECS)
