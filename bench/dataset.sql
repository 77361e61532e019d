-- The rows of a bench data set (bench/dataset.py runs it, one statement between lines
-- holding only ";"). Binds: :now (the moment the set is anchored to), :coaches,
-- :students, :contracts, :per_contract, :busy, :busy_per_contract, :quiet, :buffer,
-- :seed, :hash. No colon may appear inside a literal here (binds are found by colon).
--
-- Ids are fixed: admin 1, coach n (1..coaches) is user 1 + n, student n is user
-- 1 + coaches + n. Coach 1 and student 1 are the busy pair. Payment, payout and refund
-- ids equal their session's id; ledger transaction ids are 4 per payment.
SET LOCAL TIME ZONE 'UTC'
;
CREATE TEMP TABLE bench_u (i int PRIMARY KEY, h int) ON COMMIT DROP
;
-- u(i): a fixed pseudo-random 0..99 per id (the seed makes a different but fixed set).
INSERT INTO bench_u
SELECT i, abs(hashint8extended(i, :seed) % 100)::int
FROM generate_series(0, :contracts * :per_contract + :busy + 10) AS i
;
INSERT INTO users (id, email, name, password_hash, role, timezone, status, session_token,
                   created_at, updated_at, calendar_token)
SELECT id, email, name, :hash, role,
       (ARRAY['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'Europe/London',
              'Asia/Kolkata', 'America/Los_Angeles', 'Africa/Lagos',
              'Australia/Sydney'])[1 + id % 8],
       'active', 'bench-session-' || id, :now - interval '800 days',
       :now - interval '800 days', 'bench-calendar-' || id
FROM (
    SELECT 1 AS id, 'admin@bench.example' AS email, 'Ada Admin' AS name, 'admin' AS role
    UNION ALL
    SELECT 1 + n, 'coach-' || lpad(n::text, 4, '0') || '@bench.example',
           'Coach ' || lpad(n::text, 4, '0'), 'coach'
    FROM generate_series(1, :coaches) AS n
    UNION ALL
    SELECT 1 + :coaches + n, 'student-' || lpad(n::text, 4, '0') || '@bench.example',
           'Student ' || lpad(n::text, 4, '0'), 'student'
    FROM generate_series(1, :students) AS n
) AS people
;
-- A third of the coaches can receive transfers (the busy coach among them); the others'
-- earnings stay payable.
INSERT INTO coach_profiles (id, user_id, headline, bio, buffer_minutes, min_notice_hours,
                            horizon_days, rating_count, stripe_account_id, payouts_enabled,
                            updated_at)
SELECT n, 1 + n, 'Coach ' || n || ' teaches languages and maths',
       'Patient, structured lessons with homework after each session.', :buffer, 12, 60, 0,
       CASE WHEN n % 3 = 1 THEN 'acct_bench_' || n END, n % 3 = 1, :now
FROM generate_series(1, :coaches) AS n
;
INSERT INTO coach_subjects (profile_id, name)
SELECT n, (ARRAY['spanish', 'german', 'maths', 'physics', 'piano', 'chess', 'english',
                 'coding'])[1 + (n + k * 3) % 8]
FROM generate_series(1, :coaches) AS n, generate_series(0, 1) AS k
;
-- Offering 2n-1 (60 minutes) and 2n (90 minutes) of coach n; a fifth price in USD.
INSERT INTO offerings (id, coach_id, title, description, duration_minutes, price_minor,
                       currency, status, created_at, updated_at)
SELECT 2 * n - 1 + k, 1 + n,
       CASE k WHEN 0 THEN 'Conversation practice' ELSE 'Exam preparation' END,
       'Weekly lessons at your level.', 60 + 30 * k,
       (3000 + (n * 7 % 50) * 100) * (2 + k) / 2,
       CASE WHEN n % 5 = 4 THEN 'USD' ELSE 'EUR' END, 'active',
       :now - interval '800 days', :now - interval '800 days'
FROM generate_series(1, :coaches) AS n, generate_series(0, 1) AS k
;
-- Weekdays 09–17 and Saturday 10–14 in the coach's own zone.
INSERT INTO availability_rules (coach_id, weekday, start_minute, end_minute)
SELECT 1 + n, d, CASE WHEN d = 5 THEN 600 ELSE 540 END, CASE WHEN d = 5 THEN 840 ELSE 1020 END
FROM generate_series(1, :coaches) AS n, generate_series(0, 5) AS d
;
-- The plan: one row per session. Regular contract k (0-based) pairs student r + 1 with
-- coach (r + b) % coaches + 1 (r = k % students, b = k / students) at weekly slot
-- h = r / coaches + 10 b, which no other contract of that coach or that student uses:
-- Monday–Friday (h / 5), 08, 10, 12, 14 or 16 UTC, for per_contract consecutive weeks.
-- The busy pair meets four times a day at 05, 18, 20 and 22 UTC, outside every slot.
CREATE TEMP TABLE bench_plan ON COMMIT DROP AS
WITH regular AS (
    SELECT k * :per_contract + j + 1 AS id, k + 1 AS contract_id, j + 1 AS number,
           2 + (r + b) % :coaches AS coach_id, 2 + :coaches + r AS student_id,
           2 * ((r + b) % :coaches + 1) - 1 + CASE WHEN k % 3 = 2 THEN 1 ELSE 0 END
               AS offering_id,
           date_trunc('week', CAST(:now AS timestamptz))
               + ((-104 + (k * 37) % 113 + j) * 7 + h / 5) * interval '1 day'
               + (8 + 2 * (h % 5)) * interval '1 hour' AS starts_at
    FROM (SELECT k, k % :students AS r, k / :students AS b,
                 (k % :students) / :coaches + 10 * (k / :students) AS h
          FROM generate_series(0, :contracts - 1) AS k) AS c,
         generate_series(0, :per_contract - 1) AS j
), busy AS (
    -- Days before the build for 70% of them, the rest from :quiet days after it.
    SELECT :contracts * :per_contract + i + 1 AS id,
           :contracts + 1 + i / :busy_per_contract AS contract_id,
           i % :busy_per_contract + 1 AS number, 2 AS coach_id, 2 + :coaches AS student_id,
           1 AS offering_id,
           date_trunc('day', CAST(:now AS timestamptz))
               + CASE WHEN i / 4 < past_days THEN i / 4 - past_days - 1
                      ELSE :quiet + i / 4 - past_days END * interval '1 day'
               + (ARRAY[5, 18, 20, 22])[1 + i % 4] * interval '1 hour' AS starts_at
    FROM generate_series(0, :busy - 1) AS i,
         (SELECT (CAST(:busy AS int) / 4) * 7 / 10 AS past_days) AS p
), sessions AS (
    SELECT * FROM regular UNION ALL SELECT * FROM busy
), placed AS (
    SELECT s.*, o.duration_minutes, o.price_minor, o.currency, u.h AS u,
           (SELECT h FROM bench_u WHERE i = s.id / 2) AS u2,
           CASE WHEN s.starts_at < CAST(:now AS timestamptz) - interval '1 day 3 hours'
                    THEN 'past'
                WHEN s.starts_at >= CAST(:now AS timestamptz) + :quiet * interval '1 day'
                    THEN 'future'
                ELSE 'near' END AS phase
    FROM sessions AS s JOIN offerings AS o ON o.id = s.offering_id
    JOIN bench_u AS u ON u.i = s.id
)
SELECT p.*,
       p.starts_at + p.duration_minutes * interval '1 minute' AS ends_at,
       LEAST(p.starts_at - (3 + p.u % 10) * interval '1 day',
             CAST(:now AS timestamptz) - interval '2 days') AS booked_at,
       CASE
           WHEN p.phase = 'past' THEN CASE
               WHEN p.u < 68 AND p.id % 250 = 0 THEN 'disputed'
               WHEN p.u < 68 AND p.id % 250 = 125 THEN 'resolved'
               WHEN p.u < 68 THEN 'completed'
               WHEN p.u < 78 THEN 'cancel_early'
               WHEN p.u < 81 THEN 'cancel_late'
               WHEN p.u < 84 THEN 'cancel_coach'
               WHEN p.u < 89 THEN 'missed'
               ELSE 'expired' END
           WHEN p.phase = 'near' THEN 'cancel_early'
           ELSE CASE WHEN p.u < 85 THEN 'scheduled'
                     WHEN p.u < 95 THEN 'cancel_early'
                     ELSE 'expired' END
       END AS fate,
       p.price_minor / 10 AS fee_minor
FROM placed AS p
;
CREATE INDEX ON bench_plan (id)
;
ALTER TABLE bench_plan ADD COLUMN session_status text, ADD COLUMN payment_status text,
    ADD COLUMN cancelled_at timestamptz, ADD COLUMN done_at timestamptz,
    ADD COLUMN payouts_enabled boolean
;
-- done_at: when the session reached its final state (or was paid, if it has none yet).
UPDATE bench_plan AS p SET
    session_status = CASE p.fate WHEN 'disputed' THEN 'completed'
                                 WHEN 'resolved' THEN 'completed'
                                 WHEN 'cancel_early' THEN 'cancelled'
                                 WHEN 'cancel_late' THEN 'cancelled'
                                 WHEN 'cancel_coach' THEN 'cancelled'
                                 ELSE p.fate END,
    payment_status = CASE p.fate WHEN 'completed' THEN 'released'
                                 WHEN 'resolved' THEN 'released'
                                 WHEN 'cancel_late' THEN 'released'
                                 WHEN 'disputed' THEN 'disputed'
                                 WHEN 'scheduled' THEN 'held'
                                 WHEN 'expired' THEN CASE WHEN p.u % 2 = 0 THEN 'pending'
                                                          ELSE 'failed' END
                                 ELSE 'refunded' END,
    cancelled_at = CASE p.fate
        WHEN 'cancel_early' THEN LEAST(p.starts_at - interval '2 days',
                                       CAST(:now AS timestamptz) - interval '1 day')
        WHEN 'cancel_late' THEN p.starts_at - interval '6 hours'
        WHEN 'cancel_coach' THEN p.starts_at - interval '1 day' END,
    done_at = CASE
        WHEN p.fate IN ('completed', 'disputed', 'resolved') THEN p.ends_at
            + interval '5 minutes'
        WHEN p.fate = 'missed' THEN p.ends_at + interval '30 minutes'
        WHEN p.fate = 'expired' THEN p.booked_at + interval '15 minutes'
        WHEN p.fate = 'scheduled' THEN p.booked_at + interval '5 minutes' END,
    payouts_enabled = cp.payouts_enabled
FROM coach_profiles AS cp WHERE cp.user_id = p.coach_id
;
UPDATE bench_plan SET done_at = cancelled_at WHERE cancelled_at IS NOT NULL
;
-- Every contract was proposed and accepted a day before its first booking.
INSERT INTO proposals (id, student_id, coach_id, offering_id, sessions_count, message,
                       status, expires_at, decided_at, created_at, updated_at)
SELECT contract_id, min(student_id), min(coach_id), min(offering_id), count(*),
       'I would like weekly lessons.', 'accepted', min(booked_at) + interval '5 days',
       min(booked_at) - interval '1 day', min(booked_at) - interval '2 days',
       min(booked_at) - interval '1 day'
FROM bench_plan GROUP BY contract_id
;
INSERT INTO contracts (id, proposal_id, student_id, coach_id, offering_id, title,
                       duration_minutes, price_minor, currency, total_sessions, status,
                       created_at, updated_at)
SELECT pr.id, pr.id, pr.student_id, pr.coach_id, pr.offering_id, o.title,
       o.duration_minutes, o.price_minor, o.currency, pr.sessions_count,
       CASE WHEN done.n = pr.sessions_count THEN 'completed' ELSE 'active' END,
       pr.decided_at, pr.decided_at
FROM proposals AS pr JOIN offerings AS o ON o.id = pr.offering_id
JOIN (SELECT contract_id, count(*) FILTER (WHERE session_status = 'completed') AS n
      FROM bench_plan GROUP BY contract_id) AS done ON done.contract_id = pr.id
;
-- Two proposals waiting for each coach's answer (they expire after the set is rebuilt).
INSERT INTO proposals (id, student_id, coach_id, offering_id, sessions_count, message,
                       status, expires_at, created_at, updated_at)
SELECT (SELECT max(id) FROM contracts) + 2 * (n - 1) + k + 1,
       2 + :coaches + (n * 3 + k) % :students, 1 + n, 2 * n - 1, 5,
       'Could we start next month?', 'pending',
       CAST(:now AS timestamptz) + interval '7 days',
       CAST(:now AS timestamptz) - interval '1 hour',
       CAST(:now AS timestamptz) - interval '1 hour'
FROM generate_series(1, :coaches) AS n, generate_series(0, 1) AS k
;
INSERT INTO sessions (id, contract_id, number, coach_id, student_id, starts_at, ends_at,
                      coach_block_end, status, hold_expires_at, meeting_room,
                      confirmed_by_coach, started_at, started_by_id, student_joined_at,
                      coach_joined_at, completed_at, completed_by_id, student_notes,
                      coach_notes, missed_by, missed_reason, marked_missed_by_id,
                      cancelled_by_id, cancelled_at, late, reason, created_at, updated_at)
SELECT id, contract_id, number, coach_id, student_id, starts_at, ends_at,
       ends_at + :buffer * interval '1 minute', session_status,
       CASE WHEN fate = 'expired' THEN booked_at + interval '15 minutes' END,
       'bench-room-' || id,
       fate NOT IN ('expired') AND u2 % 2 = 0,
       CASE WHEN session_status = 'completed' THEN starts_at END,
       CASE WHEN session_status = 'completed' THEN
           CASE WHEN u2 % 2 = 0 THEN coach_id ELSE student_id END END,
       CASE WHEN session_status = 'completed' THEN starts_at + interval '1 minute' END,
       CASE WHEN session_status = 'completed' THEN starts_at END,
       CASE WHEN session_status = 'completed' THEN done_at END,
       CASE WHEN session_status = 'completed' THEN
           CASE WHEN u2 % 3 = 0 THEN NULL WHEN u2 % 3 = 1 THEN coach_id
                ELSE student_id END END,
       CASE WHEN session_status = 'completed' AND u2 % 5 = 0
            THEN 'Good practice, more next time.' END,
       CASE WHEN session_status = 'completed' AND u2 % 4 = 0
            THEN 'Worked on the past tense; homework set.' END,
       CASE WHEN fate = 'missed' THEN
           (ARRAY['student', 'coach', 'unattended'])[1 + u2 % 3] END,
       CASE WHEN fate = 'missed' AND u2 % 3 < 2 THEN 'Did not show up.' END,
       CASE WHEN fate = 'missed' AND u2 % 3 = 0 THEN coach_id
            WHEN fate = 'missed' AND u2 % 3 = 1 THEN student_id END,
       CASE WHEN fate IN ('cancel_early', 'cancel_late') THEN student_id
            WHEN fate = 'cancel_coach' THEN coach_id END,
       cancelled_at, fate = 'cancel_late',
       CASE WHEN cancelled_at IS NOT NULL THEN 'Something came up.' END,
       booked_at, COALESCE(done_at, booked_at)
FROM bench_plan
;
INSERT INTO payments (id, session_id, student_id, coach_id, amount_minor, currency,
                      fee_minor, coach_net_minor, refunded_minor, status, gateway,
                      payment_intent_id, charge_id, failure_message, paid_at, release_at,
                      released_at, created_at, updated_at)
SELECT id, id, student_id, coach_id, price_minor, currency, fee_minor,
       price_minor - fee_minor,
       CASE WHEN payment_status = 'refunded' THEN price_minor ELSE 0 END,
       payment_status, 'test', 'pi_bench_' || id,
       CASE WHEN payment_status NOT IN ('pending', 'failed') THEN 'ch_bench_' || id END,
       CASE WHEN payment_status = 'failed' THEN 'Your card was declined (test card).' END,
       CASE WHEN payment_status NOT IN ('pending', 'failed')
            THEN booked_at + interval '5 minutes' END,
       CASE WHEN fate IN ('completed', 'resolved', 'disputed')
                THEN done_at + interval '24 hours'
            WHEN fate = 'cancel_late' THEN starts_at + interval '24 hours' END,
       CASE WHEN payment_status = 'released' THEN
           CASE WHEN fate = 'cancel_late' THEN starts_at ELSE done_at END
               + interval '24 hours 1 minute' END,
       booked_at, COALESCE(done_at, booked_at)
FROM bench_plan
;
INSERT INTO disputes (id, payment_id, opened_by_id, source, reason, status, resolution,
                      note, resolved_by_id, resolved_at, created_at, updated_at)
SELECT id, id, student_id, 'student', 'The coach left after twenty minutes.',
       CASE WHEN fate = 'disputed' THEN 'open' ELSE 'resolved' END,
       CASE WHEN fate = 'resolved' THEN 'release' END,
       CASE WHEN fate = 'resolved' THEN 'The recording shows a full session.' END,
       CASE WHEN fate = 'resolved' THEN 1 END,
       CASE WHEN fate = 'resolved' THEN done_at + interval '20 hours' END,
       done_at + interval '2 hours', done_at + interval '20 hours'
FROM bench_plan WHERE fate IN ('disputed', 'resolved')
;
INSERT INTO payouts (id, payment_id, coach_id, amount_minor, currency, status, transfer_id,
                     attempts, paid_at, created_at, updated_at)
SELECT p.id, p.id, p.coach_id, p.price_minor - p.fee_minor, p.currency,
       CASE WHEN p.payouts_enabled THEN 'paid' ELSE 'payable' END,
       CASE WHEN p.payouts_enabled THEN 'tr_bench_' || p.id END,
       CASE WHEN p.payouts_enabled THEN 1 ELSE 0 END,
       CASE WHEN p.payouts_enabled THEN pay.released_at + interval '1 minute' END,
       pay.released_at, pay.released_at + interval '1 minute'
FROM bench_plan AS p JOIN payments AS pay ON pay.id = p.id
WHERE pay.status = 'released'
;
INSERT INTO refunds (id, payment_id, amount_minor, currency, reason, status,
                     gateway_refund_id, attempts, created_at, updated_at)
SELECT id, id, price_minor, currency,
       CASE fate WHEN 'missed' THEN 'session missed' ELSE 'session cancelled' END,
       'succeeded', 're_bench_' || id, 1, done_at, done_at + interval '1 minute'
FROM bench_plan WHERE payment_status = 'refunded'
;
-- The ledger, as skileez/payments/ledger.py posts it: a hold for every funded payment,
-- a release (coach's net and the fee) for released ones, a refund for refunded ones,
-- and a payout for every paid payout.
INSERT INTO ledger_transactions (id, kind, payment_id, payout_id, refund_id, memo,
                                 created_at)
SELECT 4 * id - 3, 'payment_held', id, CAST(NULL AS int), CAST(NULL AS int), '', paid_at
FROM payments WHERE status NOT IN ('pending', 'failed')
UNION ALL
SELECT 4 * id - 2, 'release', id, NULL, NULL, '', released_at
FROM payments WHERE status = 'released'
UNION ALL
SELECT 4 * payment_id - 1, 'refund', payment_id, NULL, id, '', created_at
FROM refunds
UNION ALL
SELECT 4 * payment_id, 'payout', NULL, id, NULL, '', paid_at
FROM payouts WHERE status = 'paid'
;
INSERT INTO ledger_entries (transaction_id, account, coach_id, amount_minor, currency)
SELECT t.id, e.account, e.coach_id, e.amount, p.currency
FROM ledger_transactions AS t
JOIN payments AS p ON p.id = COALESCE(t.payment_id, t.payout_id)
CROSS JOIN LATERAL (VALUES
    ('payment_held', 'student_funding', NULL, -p.amount_minor),
    ('payment_held', 'escrow', NULL, p.amount_minor),
    ('release', 'escrow', NULL, -p.amount_minor),
    ('release', 'coach_payable', p.coach_id, p.coach_net_minor),
    ('release', 'platform_revenue', NULL, p.fee_minor),
    ('refund', 'escrow', NULL, -p.amount_minor),
    ('refund', 'refunds', NULL, p.amount_minor),
    ('payout', 'coach_payable', p.coach_id, -p.coach_net_minor),
    ('payout', 'paid_out', p.coach_id, p.coach_net_minor)
) AS e (kind, account, coach_id, amount)
WHERE e.kind = t.kind AND e.amount <> 0
ORDER BY t.id, e.account
;
INSERT INTO ratings (session_id, rater_id, ratee_id, stars, feedback, public,
                     would_recommend, tags, created_at)
SELECT id, student_id, coach_id, 3 + u % 3, 'Clear explanations and useful homework.',
       u2 % 2 = 0, u % 3 > 0, CAST('["clear", "patient"]' AS json),
       done_at + interval '2 hours'
FROM bench_plan WHERE fate = 'completed' AND u2 % 3 = 0
;
UPDATE coach_profiles AS cp SET rating_average = r.average, rating_count = r.n
FROM (SELECT ratee_id, avg(stars) AS average, count(*) AS n FROM ratings
      GROUP BY ratee_id) AS r
WHERE r.ratee_id = cp.user_id
;
INSERT INTO reschedule_requests (session_id, requested_by_id, original_start,
                                 proposed_start, reason, deadline, status, late,
                                 decided_by_id, decided_at, note, created_at, updated_at)
SELECT id, student_id, starts_at, starts_at + interval '1 day',
       'A work trip moved; could we meet a day later?',
       booked_at + interval '1 day 2 hours', 'declined', false, coach_id,
       booked_at + interval '3 hours', 'That day is full, sorry.',
       booked_at + interval '2 hours', booked_at + interval '3 hours'
FROM bench_plan WHERE u2 % 25 = 0 AND fate IN ('completed', 'scheduled', 'cancel_early')
;
-- What each side was told: the receipt and the booking for every funded payment, and a
-- rating request for one completed session in ten. Read once two weeks old.
INSERT INTO notifications (id, recipient_id, kind, payload, read_at, created_at)
SELECT row_number() OVER (ORDER BY at, recipient_id, kind), recipient_id, kind,
       json_build_object('session_id', n.id, 'contract_title', c.title,
                         'starts_at', n.starts_at, 'coach_name', coach.name,
                         'student_name', student.name,
                         'amount', n.currency || ' ' || to_char(n.price_minor / 100.0,
                                                                'FM999990.00')),
       CASE WHEN at < CAST(:now AS timestamptz) - interval '14 days'
            THEN at + interval '1 hour' END, at
FROM (
    SELECT p.*, p.student_id AS recipient_id, 'payment_received' AS kind,
           p.booked_at + interval '5 minutes' AS at
    FROM bench_plan AS p WHERE p.payment_status NOT IN ('pending', 'failed')
    UNION ALL
    SELECT p.*, p.coach_id, 'session_booked', p.booked_at + interval '5 minutes'
    FROM bench_plan AS p WHERE p.payment_status NOT IN ('pending', 'failed')
    UNION ALL
    SELECT p.*, p.student_id, 'session_completed', p.done_at
    FROM bench_plan AS p WHERE p.fate = 'completed' AND p.id % 10 = 0
) AS n
JOIN contracts AS c ON c.id = n.contract_id
JOIN users AS coach ON coach.id = n.coach_id
JOIN users AS student ON student.id = n.student_id
;
-- Each notification's email, kept in the local mailbox; one in 500 failed for good.
INSERT INTO outbox_emails (id, recipient_id, notification_id, to_address, subject,
                           text_body, html_body, kind, status, attempts, next_attempt_at,
                           last_error, transport, message_id, sent_at, created_at,
                           updated_at)
SELECT n.id, n.recipient_id, n.id, u.email,
       'Your session of ' || (n.payload ->> 'contract_title'),
       'Hello ' || u.name || E',\n\nYour session of ' || (n.payload ->> 'contract_title')
           || E' is booked.\n\nSkileez',
       '<p>Hello ' || u.name || ',</p><p>Your session of '
           || (n.payload ->> 'contract_title') || ' is booked.</p>',
       n.kind, CASE WHEN n.id % 500 = 0 THEN 'failed' ELSE 'sent' END,
       CASE WHEN n.id % 500 = 0 THEN 8 ELSE 1 END, n.created_at,
       CASE WHEN n.id % 500 = 0 THEN 'SMTP 550 mailbox unavailable' END,
       CASE WHEN n.id % 500 = 0 THEN NULL ELSE 'local' END,
       '<bench-' || n.id || '@bench.example>',
       CASE WHEN n.id % 500 = 0 THEN NULL ELSE n.created_at + interval '1 minute' END,
       n.created_at, n.created_at + interval '1 minute'
FROM notifications AS n JOIN users AS u ON u.id = n.recipient_id
;
-- The last state change of every session, as the transition helper writes it.
INSERT INTO audit_events (actor_id, object_type, object_id, field, from_state, to_state,
                          reason, created_at)
SELECT CASE WHEN fate IN ('expired') OR (fate = 'missed' AND u2 % 3 = 2) THEN NULL
            WHEN fate = 'cancel_coach' THEN coach_id ELSE student_id END,
       'sessions', id, 'status',
       CASE WHEN session_status IN ('scheduled', 'expired') THEN 'pending_payment'
            ELSE 'scheduled' END,
       session_status,
       CASE fate WHEN 'expired' THEN 'payment hold expired'
                 WHEN 'scheduled' THEN 'payment received' END,
       done_at
FROM bench_plan ORDER BY done_at
;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'coach_profiles', 'coach_subjects', 'offerings',
                             'availability_rules', 'time_off', 'proposals', 'contracts',
                             'sessions', 'payments', 'payouts', 'refunds', 'disputes',
                             'ledger_transactions', 'ledger_entries', 'ratings',
                             'reschedule_requests', 'reminders', 'notifications',
                             'outbox_emails', 'audit_events'] LOOP
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''), '
                       'COALESCE(max(id), 0) + 1, false) FROM %I', t, t);
    END LOOP;
END
$$
