package ebpf

// The programs are compiled with clang into datapath_bpfel.o, which is
// committed with its Go bindings (datapath_bpfel.go), so building needs no
// clang. After editing bpf/*.c or bpf/*.h, run `go generate` here (needs
// clang, llvm and libbpf-dev; generate_test.go checks the committed object
// is current when clang is installed).
//go:generate go tool bpf2go -tags linux -target bpfel -type upcall -type action -type ct_key -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" datapath bpf/datapath.c
