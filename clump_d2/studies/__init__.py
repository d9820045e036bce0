"""Studies built on the library: real-data comparisons, realism, injection-recovery,
detectability, benchmarks and backbone speed. The library (everything else in clump_d2)
never imports this package."""
