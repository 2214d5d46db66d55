# Which table each answer of the simulator really answered, checked against the job that
# took it: a response taken as the answer to another table's request is a "wrong decode".
# Used by the virtual-time tests (tests/host/core/vbench.py) and tools/bench_link.py;
# SANS-IO, MicroPython-compatible.


def track(meter, engine, poller):
    """Wrap the simulator's send and every submit path (poller, alert chain, user jobs) of
    the link engine. Returns a dict that counts the successful jobs ('ok') and lists the
    wrong ones ('wrong': (job description, table the response answered or -1))."""
    answered = {}
    out = {'ok': 0, 'wrong': []}
    send = meter._send

    def _send(resp, t, what, msg):
        if msg is not None:
            answered[bytes(resp)] = msg.table
        return send(resp, t, what, msg)
    meter._send = _send
    submit = engine.submit

    def _submit(job):
        if getattr(job, 'tracked', False):  # a poll's job is sent again and again
            return submit(job)
        job.tracked = True
        done = job.done

        def _done(j):
            r = j.response
            if r is not None and r.status == 0 and j.info is not None:
                out['ok'] += 1
                got = answered.get(bytes(r.raw), -1)
                if got != j.info.table:
                    out['wrong'].append((j.describe(), got))
            if done is not None:
                done(j)
        job.done = _done
        return submit(job)
    engine.submit = _submit
    engine.alerts.submit = _submit
    poller.submit = _submit
    return out
