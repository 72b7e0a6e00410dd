// @spinmesh/client: the `spinmesh` command line (src/cli.ts). The typed gRPC client joins this
// package with the job service.
export {};
