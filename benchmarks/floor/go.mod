module pilotmesh/benchmarks/floor

go 1.21
