/* seam_edge.h: the C API of libseam_edge.so, the edge side of Seam split
 * fine-tuning. An app joins a job at a seam-cloud server, trains the job's
 * front half on batches it supplies (its data never leaves the device; only
 * compressed activations go up and compressed gradients come down), and
 * saves and restores its checkpoint. Compiles as C99 and as C++; below the C
 * API, a small C++ wrapper (namespace seam_edge) that throws on errors.
 *
 * Rules
 * - Handles are opaque. Every call returns a seam_status; after a failure,
 *   seam_error_message(handle) says what went wrong. No C++ exception ever
 *   leaves the library.
 * - Threading: a handle is used by one thread at a time; calls on one handle
 *   must not overlap. Different handles are independent and may be used from
 *   different threads at once. Two exceptions: seam_cancel() may be called
 *   from any thread at any time while the handle exists, and seam_version()
 *   anywhere. The progress callback runs on the thread that made the call,
 *   inside it; it must not call the same handle (except seam_cancel).
 * - Cancel: the running call (or the next one) returns SEAM_E_CANCELLED before
 *   it starts its next step or batch. A step already sent completes first, so
 *   no step is half applied. A network wait lasts at most the stall timeout
 *   per attempt (stall-timeout-ms, max-attempts).
 * - Memory: the library copies nothing it does not need to; input pointers
 *   are read during the call only. Strings returned stay valid until the next
 *   call on the same handle.
 * - The library never touches process-wide state: no signal handlers, no
 *   global random generator, no locale, no thread-count setting.
 */
#ifndef SEAM_EDGE_H
#define SEAM_EDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SEAM_EDGE_API __attribute__((visibility("default")))

typedef enum seam_status {
  SEAM_OK = 0,
  SEAM_ROLLED_BACK = 1,     /* the cloud resumed at an earlier step; the session rolled back:
                               feed the batch of seam_step() next (not an error) */
  SEAM_E_ARGUMENT = -1,     /* a null pointer, a bad shape or dtype, a bad config value */
  SEAM_E_STATE = -2,        /* not joined yet, already joined, or closed */
  SEAM_E_NETWORK = -3,      /* the server could not be reached after every retry */
  SEAM_E_REFUSED = -4,      /* the server refused: unknown job, not allowed, another job's halves */
  SEAM_E_IO = -5,           /* a file: the job folder, a checkpoint, a certificate */
  SEAM_E_CANCELLED = -6,    /* seam_cancel() stopped the call */
  SEAM_E_NULL_HANDLE = -7,  /* the handle is NULL */
  SEAM_E_INTERNAL = -8      /* anything else; the message says what */
} seam_status;

typedef struct seam_session seam_session;

typedef enum seam_dtype { SEAM_FLOAT32 = 1, SEAM_INT64 = 2, SEAM_INT32 = 3 } seam_dtype;

/* A dense row-major tensor the app owns. */
typedef struct seam_tensor {
  const void* data;
  seam_dtype dtype;
  int ndim;
  const int64_t* shape;
} seam_tensor;

/* One batch: inputs are float32 images [B, C, H, W] or int64 token ids
 * [B, L]; labels int64 [B]; mask (optional, data NULL = none) [B, L] with 1 =
 * token, 0 = padding; ids: B stable sample ids (delta codecs key on them). */
typedef struct seam_batch {
  seam_tensor inputs;
  seam_tensor labels;
  seam_tensor mask;
  const int64_t* ids;
} seam_batch;

typedef struct seam_step_result {
  uint64_t step; /* the step just applied */
  double loss, accuracy;
  uint64_t bytes_up, bytes_down;   /* whole frames of this step */
  uint64_t naive_up, naive_down;   /* the same step as fp32 tensors and int64 extras */
  double edge_ms, encode_ms, link_ms, cloud_ms, decode_ms;
} seam_step_result;

typedef struct seam_stats {
  uint64_t step;            /* the next step */
  uint64_t steps_this_run;  /* steps applied through this handle */
  uint64_t bytes_up, bytes_down;  /* every frame, Hello and checkpoints included */
  uint64_t naive_up, naive_down;  /* the steps as fp32 tensors and int64 extras */
  double edge_ms, encode_ms, link_ms, cloud_ms, decode_ms; /* sums over the steps */
  uint64_t reconnects;
} seam_stats;

/* Called after every applied step; return nonzero to cancel the call. */
typedef int (*seam_progress_fn)(const seam_step_result* step, void* user);

SEAM_EDGE_API const char* seam_version(void);

/* Opens a session from a config text of `key = value` lines (server, ca,
 * cert, key, job, job-dir, state-dir, client-id, checkpoint-every, ...; the
 * names of seam-edge's flags, docs/edge.md). *out always receives a handle,
 * unless out is NULL or memory ran out: on failure it holds the message and
 * must still be closed with seam_free(). No network I/O. */
SEAM_EDGE_API seam_status seam_open(const char* config_text, seam_session** out);
SEAM_EDGE_API seam_status seam_open_file(const char* path, seam_session** out);

/* Loads the job's front half from job-dir (checked against its manifest),
 * downloading it from the server first when the folder does not exist (the
 * front half only: job.conf, edge_init.pt, manifest), resumes from the newest
 * checkpoint in state-dir, connects over mutual TLS and agrees on the step
 * with the cloud. *next_step (may be NULL) receives
 * the step to train next. */
SEAM_EDGE_API seam_status seam_join(seam_session* s, uint64_t* next_step);

/* Trains step seam_step() on one batch. `out` may be NULL. */
SEAM_EDGE_API seam_status seam_train_step(seam_session* s, const seam_batch* batch, seam_step_result* out);

/* Inference through the cloud's half: logits [B, classes] into `logits`
 * (capacity in floats; may be NULL) and the predicted class of each sample
 * into `classes` (B entries; may be NULL). Labels and ids are not needed
 * (may be NULL). Eval mode on both sides; no state changes. */
SEAM_EDGE_API seam_status seam_infer(seam_session* s, const seam_batch* batch, float* logits, size_t logits_capacity,
                                     int64_t* classes);
/* Accuracy of the model on a labelled batch (through inference), in [0, 1]. */
SEAM_EDGE_API seam_status seam_evaluate(seam_session* s, const seam_batch* batch, double* accuracy);

/* Saves the edge checkpoint at the current step and has the cloud checkpoint
 * at the same step (needs state-dir). *step (may be NULL) receives the step. */
SEAM_EDGE_API seam_status seam_save(seam_session* s, uint64_t* step);
/* Rolls back to this handle's checkpoint of `step`; the cloud goes back to
 * its own checkpoint of that step. */
SEAM_EDGE_API seam_status seam_restore(seam_session* s, uint64_t step);

SEAM_EDGE_API seam_status seam_stats_get(seam_session* s, seam_stats* out);
/* The step to train next (0 before join or for a NULL handle). */
SEAM_EDGE_API uint64_t seam_step(const seam_session* s);

SEAM_EDGE_API seam_status seam_set_progress(seam_session* s, seam_progress_fn fn, void* user);
/* Thread-safe; see Cancel above. */
SEAM_EDGE_API seam_status seam_cancel(seam_session* s);

/* The message of the handle's latest failure ("" after a success). Never
 * NULL; for a NULL handle, a fixed text. */
SEAM_EDGE_API const char* seam_error_message(const seam_session* s);

/* Ends the session (Goodbye to the server). The handle stays valid: later
 * calls return SEAM_E_STATE, until seam_free(). */
SEAM_EDGE_API seam_status seam_close(seam_session* s);
/* Closes if needed and releases the handle. NULL is allowed. */
SEAM_EDGE_API void seam_free(seam_session* s);

#ifdef __cplusplus
}  /* extern "C" */

#include <stdexcept>
#include <string>

/* The C++ API: the same calls on an owning handle; failures throw
 * seam_edge::Error carrying the status and the message. */
namespace seam_edge {

class Error : public std::runtime_error {
 public:
  Error(seam_status st, const std::string& what) : std::runtime_error(what), status_(st) {}
  seam_status status() const { return status_; }

 private:
  seam_status status_;
};

class Session {
 public:
  explicit Session(const std::string& config_text) {
    const seam_status st = seam_open(config_text.c_str(), &s_);
    if (st < 0) {
      const std::string why = seam_error_message(s_);
      seam_free(s_);
      throw Error(st, why);
    }
  }
  ~Session() { seam_free(s_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  uint64_t join() {
    uint64_t n = 0;
    check(seam_join(s_, &n));
    return n;
  }
  /* false when the session rolled back: feed the batch of step() next. */
  bool train_step(const seam_batch& b, seam_step_result* out = nullptr) {
    return check(seam_train_step(s_, &b, out)) == SEAM_OK;
  }
  double evaluate(const seam_batch& b) {
    double a = 0;
    check(seam_evaluate(s_, &b, &a));
    return a;
  }
  void infer(const seam_batch& b, float* logits, size_t capacity, int64_t* classes) {
    check(seam_infer(s_, &b, logits, capacity, classes));
  }
  uint64_t save() {
    uint64_t n = 0;
    check(seam_save(s_, &n));
    return n;
  }
  void restore(uint64_t step) { check(seam_restore(s_, step)); }
  seam_stats stats() {
    seam_stats st;
    check(seam_stats_get(s_, &st));
    return st;
  }
  uint64_t step() const { return seam_step(s_); }
  void cancel() { seam_cancel(s_); }
  void close() { check(seam_close(s_)); }
  seam_session* handle() { return s_; }

 private:
  seam_status check(seam_status st) {
    if (st < 0) throw Error(st, seam_error_message(s_));
    return st;
  }
  seam_session* s_ = nullptr;
};

}  // namespace seam_edge
#endif /* __cplusplus */

#endif /* SEAM_EDGE_H */
