# The one build system is CMake; this Makefile only names the common runs.
#   make            build (build/ssock, build/libssock.{a,so})
#   make demo       build, then run the demo (scripts/demo.sh)
#   make test       build and run the tests, then again under
#                   ASan+UBSan, and the threaded ones under TSan
#   make test-valgrind  the integration tests (label net, without the
#                   load ones and the one built with ASan) under valgrind
#                   memcheck: no errors, no leaks
#   make bench      the benchmark (bench/run.sh)
#   make fuzz       run every fuzzer for FUZZ_SECONDS (default 60)
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all deps build demo test test-plain test-asan test-tsan test-valgrind bench fuzz install clean

all: build

# Each target asks scripts/deps.sh for what it uses (and only that): as root
# what is missing is installed, otherwise it says which Debian packages.
deps:
	@bash scripts/deps.sh build demo test valgrind

build:
	@bash scripts/deps.sh build
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

demo: build
	@bash scripts/deps.sh demo
	@bash scripts/demo.sh

test: test-plain test-asan test-tsan

test-plain: build
	@bash scripts/deps.sh test
	cd build && ctest --output-on-failure -j $(JOBS)

test-asan:
	@bash scripts/deps.sh test
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSSOCK_EXAMPLES=OFF \
		-DSSOCK_SANITIZER="address;undefined" $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --output-on-failure -j $(JOBS)

test-tsan:
	@bash scripts/deps.sh test
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSSOCK_EXAMPLES=OFF \
		-DSSOCK_SANITIZER=thread $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -j $(JOBS) -L threaded

test-valgrind: build
	@bash scripts/deps.sh valgrind
	bash tests/valgrind.sh build -L net -LE "load|sanitized"

# bench/run.sh installs (or names) the reference libraries it needs itself.
bench:
	@bash scripts/deps.sh build
	@bash bench/run.sh

fuzz:
	@bash scripts/deps.sh fuzz
	@bash fuzz/run.sh $(FUZZ_SECONDS)

install: build
	cmake --install build

clean:
	rm -rf build build-asan build-tsan build-bench build-fuzz
