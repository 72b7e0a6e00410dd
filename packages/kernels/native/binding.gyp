{
  "targets": [
    {
      "target_name": "spinmesh_kernels",
      "sources": ["spinmesh_kernels.c"],
      # -O3 -march=native (override the target with SPINMESH_NATIVE_MARCH) but no -ffast-math:
      # the kernels must not depend on how the compiler reassociates. -fno-math-errno and
      # -fno-trapping-math only let it inline sqrt and if-convert the branch-free math.
      "cflags!": ["-O2", "-O3", "-Os", "-ffast-math"],
      "cflags_c": [
        "-std=gnu11",
        "-O3",
        "-march=<!(node -p \"process.env.SPINMESH_NATIVE_MARCH || 'native'\")",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter"
      ],
      "libraries": ["-lopenblas", "-lm"]
    }
  ]
}
