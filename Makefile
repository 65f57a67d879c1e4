# duet: the two commands a newcomer needs are `make demo` and `make test`.
# Both install missing Debian packages first (scripts/deps.sh).

BUILD      ?= build
ASAN_BUILD ?= build-asan
MESON_OPTS ?= --werror

.PHONY: all deps build build-asan test demo demo-stop bench format clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) $(MESON_OPTS)
	@ninja -C $(BUILD)

build-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || meson setup $(ASAN_BUILD) $(MESON_OPTS) \
		-Db_sanitize=address,undefined -Db_lundef=false
	@ninja -C $(ASAN_BUILD)

# Every test: unit and integration tests on the normal and the sanitizer
# build, fault tests, and a bounded fuzz run. Ends with "N passed, N failed".
test: build build-asan
	@bash tests/run.sh $(BUILD) $(ASAN_BUILD)

# A local pair with real volumes, driven by real NBD clients; left running.
demo: build
	@bash scripts/demo.sh $(BUILD)

demo-stop:
	@bash scripts/demo.sh --stop

bench: build
	@bash bench/nbd.sh $(BUILD)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
