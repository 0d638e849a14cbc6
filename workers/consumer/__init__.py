"""The worker's consumer: messages bucketed per workspace and handed to the pool in batches, fairly between workspaces.

sfsync owns this instead of using celery-batches, for guarantees the worker needs: the tick is
armed again at every consumer start (Celery clears its timers when the broker connection is
lost); a batch whose pool process dies goes back to the queue at once; the messages a worker
holds have their leases renewed while it lives (`leases`), so Redis's visibility timeout can be
short; and workspaces share the pool fairly (`policy`). sfsync's own retries wait in Redis
(workers/parked.py), never as countdown messages; an ETA another client sets on an event
message is not honoured: the event is synced when it comes.

One module per concern: `policy` (the fair-share rule, pure), `batches` (what is handed to the
pool), `buffer` (buckets per workspace), `floods` (flood detection's facts and spilling),
`sieve`, `drains`, `dispatch` (turns, pool slots, the hand-off), `leases`, `state` (one consumer
start, which carries out the policy), `task` (the Celery batch task).
"""
