// gpu-check's CUDA program for machines with nvcc and no PyTorch: `probe` prints the devices
// this process can see; `compute` runs a vector add checked on the host and times host-to-GPU
// copies (pinned and pageable). JSON on stdout; errors on stderr with a non-zero exit.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CHECK(call)                                                              \
  do {                                                                           \
    cudaError_t e = (call);                                                      \
    if (e != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e));            \
      std::exit(1);                                                              \
    }                                                                            \
  } while (0)

__global__ void Add(const float* a, const float* b, float* c, size_t n) {
  size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i] * 2.0f;
}

static double CopyGbps(void* host, void* dev, size_t bytes) {
  CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  cudaEvent_t start, end;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&end));
  const int reps = 5;
  CHECK(cudaEventRecord(start));
  for (int i = 0; i < reps; ++i) CHECK(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice));
  CHECK(cudaEventRecord(end));
  CHECK(cudaEventSynchronize(end));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, start, end));
  return reps * static_cast<double>(bytes) / (ms / 1000.0) / 1e9;
}

int main(int argc, char** argv) {
  const char* op = argc > 1 ? argv[1] : "compute";
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
  if (std::strcmp(op, "probe") == 0) {
    std::printf("{\"devices\": %d, \"uuids\": [", n);
    for (int i = 0; i < n; ++i) {
      cudaDeviceProp p;
      CHECK(cudaGetDeviceProperties(&p, i));
      std::printf("%s\"", i ? ", " : "");
      for (int k = 0; k < 16; ++k) std::printf("%02x", static_cast<unsigned char>(p.uuid.bytes[k]));
      std::printf("\"");
    }
    std::printf("]}\n");
    return 0;
  }
  if (n == 0) {
    std::fprintf(stderr, "no CUDA device visible\n");
    return 1;
  }
  const size_t count = 64 << 20;
  std::vector<float> a(count), b(count), c(count);
  for (size_t i = 0; i < count; ++i) a[i] = i % 1000, b[i] = (i % 7) * 0.5f;
  float *da, *db, *dc;
  CHECK(cudaMalloc(&da, count * 4));
  CHECK(cudaMalloc(&db, count * 4));
  CHECK(cudaMalloc(&dc, count * 4));
  CHECK(cudaMemcpy(da, a.data(), count * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(db, b.data(), count * 4, cudaMemcpyHostToDevice));
  Add<<<(count + 255) / 256, 256>>>(da, db, dc, count);
  CHECK(cudaGetLastError());
  CHECK(cudaMemcpy(c.data(), dc, count * 4, cudaMemcpyDeviceToHost));
  double err = 0;
  for (size_t i = 0; i < count; ++i) err = std::fmax(err, std::fabs(c[i] - (a[i] + b[i] * 2.0f)));
  cudaDeviceProp p;
  CHECK(cudaGetDeviceProperties(&p, 0));
  const size_t bytes = 512u << 20;
  void* pinned;
  CHECK(cudaMallocHost(&pinned, bytes));
  void* dev;
  CHECK(cudaMalloc(&dev, bytes));
  double pinned_gbps = CopyGbps(pinned, dev, bytes);
  std::vector<char> pageable(bytes, 1);
  double pageable_gbps = CopyGbps(pageable.data(), dev, bytes);
  std::printf(
      "{\"name\": \"%s\", \"vector_add_max_error\": %g, \"ok\": %s, \"h2d_pinned_gbps\": %.2f, "
      "\"h2d_pageable_gbps\": %.2f}\n",
      p.name, err, err == 0 ? "true" : "false", pinned_gbps, pageable_gbps);
  return 0;
}
