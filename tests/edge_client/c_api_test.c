/* The C API from C99 against a seam-cloud on loopback (started by
 * edge_test.sh): join (downloading the front half), 20 train steps, infer,
 * evaluate, save, restore, close; and bad calls
 * (null handle, wrong shapes, wrong label dtype, a call after close), each of
 * which must come back as a status and a message, never a crash.
 * Usage: seam_edge_c_test PORT PKI_DIR JOB_DIR STATE_DIR */
#define _POSIX_C_SOURCE 200112L /* pthreads under -std=c99 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seam_edge.h"

static int failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
      ++failures;                                          \
    }                                                      \
  } while (0)

#define EXPECT_OK(s, call) \
  do { seam_status st_ = (call); CHECK(st_ == SEAM_OK, "%s -> %d: %s", #call, (int)st_, seam_error_message(s)); } while (0)

/* The message of a failed call must contain `why`. */
static void expect_refusal(seam_session* s, seam_status got, seam_status want, const char* why) {
  const char* msg = seam_error_message(s);
  CHECK(got == want, "status %d, expected %d (%s)", (int)got, (int)want, msg);
  CHECK(strstr(msg, why) != NULL, "message '%s' does not contain '%s'", msg, why);
}

enum { B = 8, C = 1, H = 28, W = 28 };
static float images[B * C * H * W];
static int64_t labels[B], ids[B];
static float float_labels[B];
static const int64_t image_shape[4] = {B, C, H, W};
static const int64_t wrong_shape[4] = {B, C, 32, 32};
static const int64_t label_shape[1] = {B};

/* Batch k: a deterministic function of k (a simple LCG, no global RNG). */
static seam_batch make_batch(unsigned k) {
  uint32_t x = 12345u + 7919u * k;
  int i;
  seam_batch b;
  for (i = 0; i < B * C * H * W; ++i) {
    x = x * 1664525u + 1013904223u;
    images[i] = (float)((x >> 8) & 0xffff) / 65536.0f - 0.5f;
  }
  for (i = 0; i < B; ++i) {
    labels[i] = (int64_t)((k * 3u + (unsigned)i) % 10u);
    float_labels[i] = (float)labels[i];
    ids[i] = (int64_t)((k * B + (unsigned)i) % 40u);
  }
  memset(&b, 0, sizeof b);
  b.inputs.data = images;
  b.inputs.dtype = SEAM_FLOAT32;
  b.inputs.ndim = 4;
  b.inputs.shape = image_shape;
  b.labels.data = labels;
  b.labels.dtype = SEAM_INT64;
  b.labels.ndim = 1;
  b.labels.shape = label_shape;
  b.ids = ids;
  return b;
}

static int progress_calls = 0;
static int on_progress(const seam_step_result* r, void* user) {
  (void)user;
  ++progress_calls;
  return r->loss < 0; /* never cancels */
}

/* Cancel from another thread, without timing: the progress callback (on the
 * calling thread) hands over to a second thread, which calls seam_cancel and
 * hands back; the next call must stop before its step. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase = 0;
static seam_session* shared = NULL;

static void* canceller(void* arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  while (phase != 1) pthread_cond_wait(&cv, &mu);
  seam_cancel(shared);
  phase = 2;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  return NULL;
}

static int wait_for_cancel(const seam_step_result* r, void* user) {
  (void)r;
  (void)user;
  pthread_mutex_lock(&mu);
  phase = 1;
  pthread_cond_broadcast(&cv);
  while (phase != 2) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return 0;
}

/* A progress callback that asks to stop: the call it runs in completes. */
static int stop_after_this(const seam_step_result* r, void* user) {
  (void)r;
  (void)user;
  return 1;
}

int main(int argc, char** argv) {
  char config[2048];
  seam_session* s = NULL;
  seam_step_result r;
  seam_stats st;
  seam_batch b;
  uint64_t next = 99, saved = 0;
  unsigned k;
  double first_loss = 0, loss_at_10 = 0, replayed_loss = 0;

  if (argc != 5) {
    fprintf(stderr, "usage: %s PORT PKI_DIR JOB_DIR STATE_DIR\n", argv[0]);
    return 2;
  }
  printf("%s\n", seam_version());

  /* Bad calls on a null handle: a status, a fixed message. */
  CHECK(seam_join(NULL, NULL) == SEAM_E_NULL_HANDLE, "join(NULL)");
  CHECK(seam_train_step(NULL, NULL, NULL) == SEAM_E_NULL_HANDLE, "train_step(NULL)");
  CHECK(strstr(seam_error_message(NULL), "null handle") != NULL, "message of NULL");
  CHECK(seam_open("server = x", NULL) == SEAM_E_ARGUMENT, "open without out");
  seam_free(NULL);

  /* A config that does not parse or validate: a handle holding the message. */
  expect_refusal(s, seam_open("colour = blue\n", &s), SEAM_E_ARGUMENT, "unrecognised option 'colour'");
  CHECK(seam_join(s, NULL) == SEAM_E_STATE, "join on a failed handle");
  seam_free(s);
  s = NULL;
  expect_refusal(s, seam_open("server = 127.0.0.1:1\n", &s), SEAM_E_ARGUMENT, "ca is required");
  seam_free(s);
  s = NULL;
  expect_refusal(s, seam_open_file("/nonexistent/edge.conf", &s), SEAM_E_ARGUMENT,
                 "edge config '/nonexistent/edge.conf' cannot be read");
  seam_free(s);
  s = NULL;

  snprintf(config, sizeof config,
           "server = 127.0.0.1:%s\nca = %s/ca.pem\ncert = %s/client.pem\nkey = %s/client.key\n"
           "job = vit\njob-dir = %s\nstate-dir = %s\ncheckpoint-every = 5\nclient-id = c-test\n"
           "max-attempts = 3\nbackoff-initial-ms = 20\n",
           argv[1], argv[2], argv[2], argv[2], argv[3], argv[4]);
  EXPECT_OK(s, seam_open(config, &s));

  /* Before join. */
  b = make_batch(0);
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_STATE, "join the job first");

  EXPECT_OK(s, seam_join(s, &next));
  CHECK(next == 0, "fresh session starts at step 0, got %llu", (unsigned long long)next);
  expect_refusal(s, seam_join(s, NULL), SEAM_E_STATE, "already joined");
  EXPECT_OK(s, seam_set_progress(s, on_progress, NULL));

  for (k = 0; k < 20; ++k) {
    b = make_batch(k);
    EXPECT_OK(s, seam_train_step(s, &b, &r));
    CHECK(r.step == k, "step %llu, expected %u", (unsigned long long)r.step, k);
    CHECK(r.loss > 0 && r.loss < 20, "loss %g", r.loss);
    CHECK(r.bytes_up > 0 && r.bytes_down > 0, "bytes");
    if (k == 0) first_loss = r.loss;
    if (k == 10) loss_at_10 = r.loss;
  }
  CHECK(progress_calls == 20, "progress called %d times", progress_calls);
  CHECK(seam_step(s) == 20, "next step %llu", (unsigned long long)seam_step(s));
  EXPECT_OK(s, seam_stats_get(s, &st));
  CHECK(st.step == 20 && st.steps_this_run == 20, "stats steps %llu/%llu", (unsigned long long)st.step,
        (unsigned long long)st.steps_this_run);
  CHECK(st.bytes_up > 0 && st.naive_up > st.bytes_up / 2, "stats bytes");
  printf("20 steps: first loss %.4f, step 10 loss %.4f, bytes up %llu down %llu\n", first_loss, loss_at_10,
         (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down);

  /* Inference through the cloud: logits and classes agree, classes alone are the same,
   * evaluate is the share of right classes; no step is applied. */
  {
    float logits[B * 10];
    int64_t classes[B], classes_only[B];
    double acc = -1, right = 0;
    int i, j;
    b = make_batch(3);
    EXPECT_OK(s, seam_infer(s, &b, logits, B * 10, classes));
    for (i = 0; i < B; ++i) {
      int best = 0;
      for (j = 1; j < 10; ++j)
        if (logits[i * 10 + j] > logits[i * 10 + best]) best = j;
      CHECK(classes[i] == best, "sample %d: class %lld, argmax %d", i, (long long)classes[i], best);
      right += classes[i] == labels[i];
    }
    b.ids = NULL; /* inference needs no ids */
    EXPECT_OK(s, seam_infer(s, &b, NULL, 0, classes_only));
    CHECK(memcmp(classes, classes_only, sizeof classes) == 0, "classes alone differ");
    EXPECT_OK(s, seam_evaluate(s, &b, &acc));
    CHECK(acc == right / B, "accuracy %g, expected %g", acc, right / B);
    expect_refusal(s, seam_infer(s, &b, logits, 5, NULL), SEAM_E_ARGUMENT, "logits_capacity is 5");
    expect_refusal(s, seam_infer(s, &b, NULL, 0, NULL), SEAM_E_ARGUMENT, "logits and classes are both NULL");
    b.inputs.shape = wrong_shape;
    expect_refusal(s, seam_infer(s, &b, logits, B * 10, NULL), SEAM_E_ARGUMENT, "infer: inputs are [8, 1, 32, 32]");
    CHECK(seam_step(s) == 20, "inference applied a step");
    printf("inference: accuracy on batch 3 %.3f\n", acc);
  }

  /* Bad batches: wrong image shape, float labels, missing ids, NULL batch. */
  b = make_batch(20);
  b.inputs.shape = wrong_shape;
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_ARGUMENT, "train_step: inputs are [8, 1, 32, 32], job 'vit' takes [8, 1, 28, 28]");
  b = make_batch(20);
  b.labels.data = float_labels;
  b.labels.dtype = SEAM_FLOAT32;
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_ARGUMENT, "labels: dtype must be SEAM_INT64");
  b = make_batch(20);
  b.ids = NULL;
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_ARGUMENT, "ids: NULL");
  b = make_batch(20);
  b.inputs.dtype = (seam_dtype)42;
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_ARGUMENT, "unknown dtype 42");
  expect_refusal(s, seam_train_step(s, NULL, &r), SEAM_E_ARGUMENT, "batch is NULL");
  CHECK(seam_step(s) == 20, "refused batches applied no step");

  /* Save at 20, restore to checkpoint 10 and replay step 10: the same loss. */
  EXPECT_OK(s, seam_save(s, &saved));
  CHECK(saved == 20, "saved at %llu", (unsigned long long)saved);
  EXPECT_OK(s, seam_restore(s, 10));
  CHECK(seam_step(s) == 10, "restored to %llu", (unsigned long long)seam_step(s));
  b = make_batch(10);
  EXPECT_OK(s, seam_train_step(s, &b, &r));
  replayed_loss = r.loss;
  CHECK(replayed_loss == loss_at_10, "replayed step 10 loss %.9g, first time %.9g", replayed_loss, loss_at_10);
  expect_refusal(s, seam_restore(s, 3), SEAM_E_REFUSED, "no edge checkpoint of that step");

  /* Cancel from "another thread" (here: before the call): the call stops before its step. */
  EXPECT_OK(s, seam_cancel(s));
  b = make_batch(11);
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_CANCELLED, "cancelled");
  CHECK(seam_step(s) == 11, "a cancelled call applied no step");

  {
    pthread_t th;
    shared = s;
    EXPECT_OK(s, seam_set_progress(s, wait_for_cancel, NULL));
    CHECK(pthread_create(&th, NULL, canceller, NULL) == 0, "pthread_create");
    b = make_batch(11);
    EXPECT_OK(s, seam_train_step(s, &b, &r)); /* step 11 completes; the other thread cancels meanwhile */
    b = make_batch(12);
    expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_CANCELLED, "cancelled");
    CHECK(seam_step(s) == 12, "cancelled from another thread: next step %llu", (unsigned long long)seam_step(s));
    pthread_join(th, NULL);
    EXPECT_OK(s, seam_set_progress(s, stop_after_this, NULL));
    EXPECT_OK(s, seam_train_step(s, &b, &r)); /* step 12 applies; the callback asks to stop */
    b = make_batch(13);
    expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_CANCELLED, "cancelled");
    CHECK(seam_step(s) == 13, "stopped by the callback: next step %llu", (unsigned long long)seam_step(s));
    EXPECT_OK(s, seam_set_progress(s, NULL, NULL));
  }

  EXPECT_OK(s, seam_close(s));
  expect_refusal(s, seam_train_step(s, &b, &r), SEAM_E_STATE, "closed");
  expect_refusal(s, seam_save(s, NULL), SEAM_E_STATE, "closed");
  expect_refusal(s, seam_close(s), SEAM_E_STATE, "closed");
  seam_free(s);

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("C API test passed\n");
  return 0;
}
