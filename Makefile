# Shortcuts for the two scripts the README gives (make itself is installed by setup).
.PHONY: run test perf
run:
	scripts/run.sh
test:
	scripts/test.sh
perf:
	perf/run
