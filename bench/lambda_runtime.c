// A generic Lambda custom runtime in plain C, for bench/generic_runtime.sh: what an unmodified
// `provided` runtime does over the HTTP Runtime API, one request at a time on one keep-alive
// connection: GET .../invocation/next, wait for its answer, then POST .../response, wait for
// its 202. Nothing thaw-specific (no native channel, no pipelining). The handler answers
// {"message":"hello"} to every event.
//   cc -O2 -o bootstrap bench/lambda_runtime.c
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kHeadMax = 8192 };

static char head[kHeadMax];
static char* body;
static size_t body_cap;
static char request_id[256];
// Bytes read past the last message (the server answers one at a time, so normally none).
static char spill[kHeadMax];
static size_t spill_len;

static int Connect(const char* api) {
  char host[256];
  const char* colon = strrchr(api, ':');
  if (colon == NULL || (size_t)(colon - api) >= sizeof(host)) return -1;
  memcpy(host, api, (size_t)(colon - api));
  host[colon - api] = '\0';
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

// Reads one HTTP response: its status, its body into `body` (length in *body_len) and, when
// present, the Lambda-Runtime-Aws-Request-Id header into `request_id`. -1 on a broken
// connection or a response it cannot read.
static int ReadResponse(int fd, size_t* body_len) {
  size_t have = spill_len;
  memcpy(head, spill, spill_len);
  spill_len = 0;
  char* end = NULL;
  for (;;) {
    head[have] = '\0';
    if ((end = strstr(head, "\r\n\r\n")) != NULL) break;
    if (have >= kHeadMax - 1) return -1;
    ssize_t r = read(fd, head + have, kHeadMax - 1 - have);
    if (r <= 0) return -1;
    have += (size_t)r;
  }
  const size_t head_len = (size_t)(end - head) + 4;
  int status = 0;
  if (sscanf(head, "HTTP/1.1 %d", &status) != 1) return -1;
  size_t length = 0;
  request_id[0] = '\0';
  for (char* line = strstr(head, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
    if (strncasecmp(line, "Content-Length:", 15) == 0) {
      length = strtoul(line + 15, NULL, 10);
    } else if (strncasecmp(line, "Lambda-Runtime-Aws-Request-Id:", 30) == 0) {
      const char* v = line + 30;
      while (*v == ' ') ++v;
      size_t n = strcspn(v, "\r");
      if (n >= sizeof(request_id)) return -1;
      memcpy(request_id, v, n);
      request_id[n] = '\0';
    }
  }
  if (length + 1 > body_cap) {
    body_cap = length + 1;
    body = realloc(body, body_cap);
    if (body == NULL) return -1;
  }
  size_t got = have - head_len < length ? have - head_len : length;
  memcpy(body, head + head_len, got);
  if (have - head_len > length) {
    spill_len = have - head_len - length;
    memcpy(spill, head + head_len + length, spill_len);
  }
  while (got < length) {
    ssize_t r = read(fd, body + got, length - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  body[length] = '\0';
  *body_len = length;
  return status;
}

int main(void) {
  const char* api = getenv("AWS_LAMBDA_RUNTIME_API");
  if (api == NULL) {
    fprintf(stderr, "AWS_LAMBDA_RUNTIME_API is not set\n");
    return 1;
  }
  static const char kAnswer[] = "{\"message\":\"hello\"}";
  char next[512];
  snprintf(next, sizeof(next),
           "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n", api);
  int fd = -1;
  for (;;) {
    if (fd < 0 && (fd = Connect(api)) < 0) {
      perror("connect to the Runtime API");
      return 1;
    }
    size_t len = 0;
    const int status = WriteAll(fd, next, strlen(next)) != 0 ? -1 : ReadResponse(fd, &len);
    if (status == 410) return 0;  // the instance is being stopped
    if (status != 200 || request_id[0] == '\0') {
      if (status != -1) {
        fprintf(stderr, "GET next answered %d: %s\n", status, body != NULL ? body : "");
        return 1;
      }
      close(fd);  // the connection broke: a new one
      fd = -1;
      spill_len = 0;
      continue;
    }
    char post[1024];
    int n = snprintf(post, sizeof(post),
                     "POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     request_id, api, sizeof(kAnswer) - 1, kAnswer);
    if (n < 0 || (size_t)n >= sizeof(post)) return 1;
    const int answered = WriteAll(fd, post, (size_t)n) != 0 ? -1 : ReadResponse(fd, &len);
    if (answered != 202) {
      if (answered != -1) {
        fprintf(stderr, "POST response answered %d: %s\n", answered, body != NULL ? body : "");
        return 1;
      }
      close(fd);
      fd = -1;
      spill_len = 0;
    }
  }
}
