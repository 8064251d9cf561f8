"""redis_server.py - a private redis-server for C tests (harness.RedisServer).

    /usr/bin/python3 redis_server.py [PASSWORD]
    -> prints "PORT\\n" once redis answers PING, then reads commands, one a
       line, and answers each with "ok\\n" (or "error ...\\n"):
         kill            SIGKILL the server
         start           start it again on the same port
         cmd ARG...      run one command (arguments split at blanks)
    EOF on stdin stops the server and removes its directory, so it goes away
    even when the test crashes.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def main():
    r = harness.RedisServer(password=sys.argv[1] if len(sys.argv) > 1 else None)
    with r:
        sys.stdout.write("%d\n" % r.port)
        sys.stdout.flush()
        for line in sys.stdin:
            words = line.split()
            try:
                if words == ["kill"]:
                    r.kill()
                elif words == ["start"]:
                    r.start()
                elif words and words[0] == "cmd":
                    r.cmd(*words[1:])
                else:
                    raise ValueError("unknown command %r" % line)
                sys.stdout.write("ok\n")
            except Exception as e:  # report, keep serving
                sys.stdout.write("error %s\n" % str(e).replace("\n", " "))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
