#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "block_manager/kv_cache_events.h"
#include "kv_events/event_encoding.h"
#include "kv_events/kv_events_config.h"

namespace pagoda::kv_events {

// vLLM's ZmqEventPublisher in C++ (docs/kv_events.md): a PUB socket sending each batch as 3
// frames [topic, 8-byte big-endian sequence number, msgpack EventBatch], a ring of the last
// buffer_steps batches, and an optional ROUTER socket that replays them from a requested
// sequence number. The first batch (sequence 0) is AllBlocksCleared: the engine's cache starts
// empty, and a subscriber that sees a process restart can tell from it.
//
// Publish() never blocks: it moves the batch into a bounded queue and returns false (counting
// a dropped batch) when the queue is full. Sequence numbers are given by the publisher thread,
// so a dropped batch leaves no gap: the engine re-announces its cache instead
// (block_manager::KvEventSink). Gaps seen by a subscriber come from ZeroMQ's high-water mark,
// and replay repairs them.
//
// Thread-safe: Publish and stats may be called from any thread; the sockets belong to the
// publisher thread.
class ZmqEventPublisher final : public block_manager::KvEventSink {
 public:
  struct Options {
    KvEventsConfig config;  // config.publishes() must be true
    std::string topic;      // the final topic (the server fills in the default)
    EncodingOptions encoding;
    // Tests only: false leaves the queue undrained until StartForTesting().
    bool start_thread = true;
  };

  struct Stats {
    int64_t batches_published = 0;  // sent on the PUB socket
    int64_t batches_dropped = 0;    // refused by Publish (queue full)
    int64_t replay_requests = 0;
    int64_t batches_replayed = 0;
  };

  // Binds or connects the sockets; an error names the config field (e.g. "endpoint: cannot
  // bind tcp://*:5557: Address already in use").
  static absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> Create(const Options& options);
  // Sends what is queued (for up to a second), then closes the sockets.
  ~ZmqEventPublisher() override;

  ZmqEventPublisher(const ZmqEventPublisher&) = delete;
  ZmqEventPublisher& operator=(const ZmqEventPublisher&) = delete;

  [[nodiscard]] bool Publish(std::vector<block_manager::KvCacheEvent> events) override;

  Stats stats() const;
  void StartForTesting();
  // The addresses as ZeroMQ resolved them (a bound "tcp://*:0" shows its port).
  const std::string& endpoint() const { return endpoint_; }
  const std::optional<std::string>& replay_endpoint() const { return replay_endpoint_; }
  const std::string& topic() const { return options_.topic; }

 private:
  struct Batch {
    double timestamp = 0;
    std::vector<block_manager::KvCacheEvent> events;
  };

  explicit ZmqEventPublisher(const Options& options);
  absl::Status OpenSockets();
  void Loop();
  void Send(const Batch& batch);
  void ServeReplays();

  const Options options_;
  zmq::context_t context_;
  zmq::socket_t pub_;
  std::optional<zmq::socket_t> replay_;
  std::string endpoint_;
  std::optional<std::string> replay_endpoint_;

  mutable absl::Mutex mu_;
  std::deque<Batch> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;

  // Publisher thread only.
  uint64_t next_seq_ = 0;
  std::deque<std::pair<uint64_t, std::string>> ring_;  // (seq, payload), oldest first

  std::atomic<int64_t> batches_published_{0};
  std::atomic<int64_t> batches_dropped_{0};
  std::atomic<int64_t> replay_requests_{0};
  std::atomic<int64_t> batches_replayed_{0};

  std::thread thread_;
};

}  // namespace pagoda::kv_events
