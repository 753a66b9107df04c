-- mqueue schema: MySQL 8.0.1+ or MariaDB 10.6+ (the worker claims with FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS task (
    id BIGINT NOT NULL AUTO_INCREMENT,
    args MEDIUMTEXT NOT NULL,              -- JSON: a list (positional) or an object (keyword arguments)
    eta DATETIME(6) NOT NULL,              -- UTC: due time, or while claimed the end of the lease
    name VARCHAR(128) NOT NULL,            -- the registered task name, e.g. tasks.mail
    queue VARCHAR(32) NOT NULL,
    retries SMALLINT NOT NULL DEFAULT 0,   -- attempts begun (counted when claimed)
    priority SMALLINT NOT NULL DEFAULT 0,  -- smaller runs first
    claimed_at DATETIME(6) NULL,           -- UTC: when a worker claimed the attempt now running; NULL once it ends
    dead_at DATETIME(6) NULL,              -- UTC: when the task gave up (dead: never claimed)
    last_error TEXT NULL,                  -- the last failure: type, message, traceback
    enqueued_at DATETIME(6) NULL,          -- UTC: when it was enqueued (NULL: before 0.4)
    started_at DATETIME(6) NULL,           -- UTC: when its first attempt was claimed
    deadline DATETIME(6) NULL,             -- UTC: when the attempt now running times out, if the task has a timeout
    worker VARCHAR(255) NULL,              -- who runs the attempt now running: host:pid:thread
    errors MEDIUMTEXT NULL,                -- JSON: the failed attempts' errors, oldest first (the last ERRORS_KEPT)
    unique_key VARCHAR(255) NULL,          -- while set, no other task has it: enqueue(unique=...)
    PRIMARY KEY (id),
    UNIQUE KEY unique_key (unique_key),
    KEY claim (queue, dead_at, priority, eta),
    KEY claimed (claimed_at)               -- a dead worker's tasks, found by their claim's age
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS cron (
    queue VARCHAR(32) NOT NULL,
    name VARCHAR(128) NOT NULL,
    last DATETIME(6) NOT NULL,             -- UTC: the newest fire already covered
    task_id BIGINT NULL,                   -- the task enqueued for it (no new one while it is pending)
    PRIMARY KEY (queue, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- What tasks that keep a result returned, or the errors they gave up with; written in the commit
-- that ends the task.
CREATE TABLE IF NOT EXISTS task_result (
    id BIGINT NOT NULL,                    -- the task's id
    name VARCHAR(128) NOT NULL,
    queue VARCHAR(32) NOT NULL,
    status VARCHAR(16) NOT NULL,           -- succeeded or dead
    value MEDIUMTEXT NULL,                 -- JSON: what it returned
    errors MEDIUMTEXT NULL,                -- JSON: its failed attempts' errors, oldest first
    attempts SMALLINT NOT NULL,
    enqueued_at DATETIME(6) NULL,          -- UTC, as on its task row
    started_at DATETIME(6) NULL,
    finished_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,       -- UTC: deleted after
    PRIMARY KEY (id),
    KEY expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Tasks ended per queue and minute, as the workers count them (the dashboard's throughput picture):
-- each worker adds what it counted every few seconds; rows older than two hours are deleted.
CREATE TABLE IF NOT EXISTS task_counts (
    queue VARCHAR(32) NOT NULL,
    minute DATETIME(6) NOT NULL,           -- UTC: the minute's start
    done INT NOT NULL DEFAULT 0,           -- tasks that succeeded
    failed INT NOT NULL DEFAULT 0,         -- attempts that failed (to be retried, or dead)
    PRIMARY KEY (queue, minute)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
