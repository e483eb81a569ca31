#include "kv_events/zmq_publisher.h"

#include <array>
#include <chrono>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/check.h"
#include "common/status_macros.h"

namespace pagoda::kv_events {
namespace {

using block_manager::KvCacheEvent;

// How often the publisher thread looks at the replay socket while no batch arrives.
constexpr absl::Duration kReplayPollInterval = absl::Milliseconds(20);
// How long the destructor lets queued batches go out.
constexpr absl::Duration kShutdownFlush = absl::Seconds(1);
constexpr int kLingerMs = 500;

std::array<char, 8> BigEndian(uint64_t v) {
  std::array<char, 8> bytes;
  for (int i = 7; i >= 0; --i) {
    bytes[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return bytes;
}

uint64_t FromBigEndian(const zmq::message_t& message) {
  uint64_t v = 0;
  const auto* bytes = static_cast<const unsigned char*>(message.data());
  for (size_t i = 0; i < message.size(); ++i) v = (v << 8) | bytes[i];
  return v;
}

double NowSeconds() { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); }

}  // namespace

absl::StatusOr<std::unique_ptr<ZmqEventPublisher>> ZmqEventPublisher::Create(
    const Options& options) {
  if (!options.config.publishes()) {
    return absl::InvalidArgumentError("enable_kv_cache_events is off or publisher is \"null\"");
  }
  std::unique_ptr<ZmqEventPublisher> publisher(new ZmqEventPublisher(options));
  PAGODA_RETURN_IF_ERROR(publisher->OpenSockets());
  {
    absl::MutexLock lock(&publisher->mu_);
    publisher->queue_.push_back(
        {.timestamp = NowSeconds(), .events = {{.kind = KvCacheEvent::Kind::kAllBlocksCleared}}});
  }
  if (options.start_thread) publisher->StartForTesting();
  return publisher;
}

void ZmqEventPublisher::StartForTesting() {
  PAGODA_CHECK(!thread_.joinable());
  thread_ = std::thread([this] { Loop(); });
}

ZmqEventPublisher::ZmqEventPublisher(const Options& options)
    : options_(options), context_(1), pub_(context_, zmq::socket_type::pub) {}

absl::Status ZmqEventPublisher::OpenSockets() {
  const KvEventsConfig& config = options_.config;
  // cppzmq reports errors as exceptions; they stop here.
  try {
    pub_.set(zmq::sockopt::sndhwm, config.hwm);
    pub_.set(zmq::sockopt::linger, kLingerMs);
    if (BindsEndpoint(config.endpoint)) {
      pub_.bind(config.endpoint);
      endpoint_ = pub_.get(zmq::sockopt::last_endpoint);
    } else {
      pub_.connect(config.endpoint);
      endpoint_ = config.endpoint;
    }
  } catch (const zmq::error_t& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint: cannot ", BindsEndpoint(config.endpoint) ? "bind " : "connect ",
                     config.endpoint, ": ", e.what()));
  }
  if (!config.replay_endpoint.has_value()) return absl::OkStatus();
  try {
    replay_.emplace(context_, zmq::socket_type::router);
    // A whole replay must fit in the reply pipe: ROUTER drops what exceeds its high-water mark.
    replay_->set(zmq::sockopt::sndhwm, config.buffer_steps + 2);
    replay_->set(zmq::sockopt::linger, 0);
    replay_->bind(*config.replay_endpoint);
    replay_endpoint_ = replay_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("replay_endpoint: cannot bind ", *config.replay_endpoint, ": ", e.what()));
  }
  return absl::OkStatus();
}

ZmqEventPublisher::~ZmqEventPublisher() {
  if (thread_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }
}

bool ZmqEventPublisher::Publish(std::vector<KvCacheEvent> events) {
  if (events.empty()) return true;
  absl::MutexLock lock(&mu_);
  if (stop_ || static_cast<int>(queue_.size()) >= options_.config.max_queue_size) {
    batches_dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  queue_.push_back({.timestamp = NowSeconds(), .events = std::move(events)});
  return true;
}

ZmqEventPublisher::Stats ZmqEventPublisher::stats() const {
  return {.batches_published = batches_published_.load(std::memory_order_relaxed),
          .batches_dropped = batches_dropped_.load(std::memory_order_relaxed),
          .replay_requests = replay_requests_.load(std::memory_order_relaxed),
          .batches_replayed = batches_replayed_.load(std::memory_order_relaxed)};
}

void ZmqEventPublisher::Loop() {
  std::optional<absl::Time> flush_deadline;
  while (true) {
    std::deque<Batch> batches;
    {
      absl::MutexLock lock(&mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !queue_.empty();
      };
      if (replay_.has_value()) {
        mu_.AwaitWithTimeout(absl::Condition(&ready), kReplayPollInterval);
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      batches.swap(queue_);
      if (stop_ && !flush_deadline.has_value()) flush_deadline = absl::Now() + kShutdownFlush;
    }
    for (const Batch& batch : batches) {
      if (flush_deadline.has_value() && absl::Now() > *flush_deadline) break;
      Send(batch);
    }
    if (replay_.has_value()) ServeReplays();
    if (flush_deadline.has_value() && batches.empty()) break;
  }
}

void ZmqEventPublisher::Send(const Batch& batch) {
  const uint64_t seq = next_seq_++;
  std::string payload = EncodeEventBatch(batch.timestamp, batch.events, options_.encoding);
  const std::array<char, 8> seq_bytes = BigEndian(seq);
  // PUB never blocks: past the high-water mark ZeroMQ drops the message for that subscriber,
  // which then sees a gap and asks for a replay.
  try {
    pub_.send(zmq::buffer(options_.topic), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_.send(zmq::buffer(seq_bytes), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    pub_.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // Only a closing context makes PUB sends fail; the batch stays in the ring for replay.
  }
  batches_published_.fetch_add(1, std::memory_order_relaxed);
  ring_.emplace_back(seq, std::move(payload));
  while (static_cast<int>(ring_.size()) > options_.config.buffer_steps) ring_.pop_front();
}

void ZmqEventPublisher::ServeReplays() {
  static constexpr std::array<char, 8> kEndMarker = {-1, -1, -1, -1, -1, -1, -1, -1};
  try {
    while (true) {
      std::vector<zmq::message_t> request;
      if (!zmq::recv_multipart(*replay_, std::back_inserter(request), zmq::recv_flags::dontwait)) {
        return;
      }
      // [client identity, empty delimiter, start sequence (8 bytes, big-endian)]
      if (request.size() != 3 || request[1].size() != 0 || request[2].size() != 8) continue;
      replay_requests_.fetch_add(1, std::memory_order_relaxed);
      const uint64_t start = FromBigEndian(request[2]);
      const zmq::message_t& client = request[0];
      for (const auto& [seq, payload] : ring_) {
        if (seq < start) continue;
        const std::array<char, 8> seq_bytes = BigEndian(seq);
        replay_->send(zmq::buffer(client.data(), client.size()), zmq::send_flags::sndmore);
        replay_->send(zmq::const_buffer(), zmq::send_flags::sndmore);
        replay_->send(zmq::buffer(seq_bytes), zmq::send_flags::sndmore);
        replay_->send(zmq::buffer(payload), zmq::send_flags::none);
        batches_replayed_.fetch_add(1, std::memory_order_relaxed);
      }
      replay_->send(zmq::buffer(client.data(), client.size()), zmq::send_flags::sndmore);
      replay_->send(zmq::const_buffer(), zmq::send_flags::sndmore);
      replay_->send(zmq::buffer(kEndMarker), zmq::send_flags::sndmore);
      replay_->send(zmq::const_buffer(), zmq::send_flags::none);
    }
  } catch (const zmq::error_t&) {
    // A client that went away mid-replay: nothing to do for it.
  }
}

}  // namespace pagoda::kv_events
