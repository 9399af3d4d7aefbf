# Two commands: `make run` and `make test`. Everything else is a helper for them.
BUILD      ?= build
TESTBUILD  ?= build-test
DATA       ?= ./data
LISTEN     ?= 127.0.0.1:8080
JOBS       ?= $(shell nproc)

.PHONY: all setup build run test bench bench-broker clean format

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: setup $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS) --target imprint imprint_seed imprint_mosquitto imprint_bench_broker

run: build
	@bash scripts/run.sh $(BUILD)/imprint $(DATA) $(LISTEN)

$(TESTBUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(TESTBUILD) -DCMAKE_BUILD_TYPE=Debug -DIMP_SANITIZE=ON >/dev/null

test: setup $(TESTBUILD)/Makefile
	cmake --build $(TESTBUILD) -j $(JOBS)
	cd $(TESTBUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

bench: build
	@bash bench/run.sh $(BUILD)

# The broker benchmark (bench/broker.sh): mosquitto with and without the plugin, 1M devices.
bench-broker: build
	@bash bench/broker.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(TESTBUILD)
