#!/usr/bin/python3
"""The controller's dashboard in a real headless Chromium (Debian chromium
+ chromium-driver, driven over the W3C WebDriver protocol with urllib: no
Selenium package needed), against a daemon whose history the test filled
with real scans through a real redis-server:

  - the page loads with no console error and shows the login form;
  - a wrong password is refused (the form says so, no data is shown);
  - the right password shows the counters, the domains scanned in the test
    with their DMARC counts, and, after a click on a domain, its top
    failing source;
  - the page loads nothing from another origin (the browser's resource
    list names only the controller);
  - screenshots of each step are saved under build/test-artifacts/.
Prints "N passed, N failed"; exits non-zero on failure."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_controller as tc  # noqa: E402

T = harness.Tests("dashboard")
ART = os.path.join(harness.BUILD, "test-artifacts")


class WebDriver:
    def __init__(self):
        self.port = harness.free_port()
        self.profile = tempfile.mkdtemp(prefix="authscan-chromium-")
        self.proc = subprocess.Popen(["chromedriver", "--port=%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_for(self._up, 30, what="chromedriver")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": shutil.which("chromium") or "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,1700",
                         "--user-data-dir=" + self.profile, "--no-first-run",
                         "--disable-extensions", "--disable-background-networking"]}}}}
        self.sid = self._call("POST", "/session", caps)["sessionId"]

    def _up(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.port, timeout=2):
                return True
        except (OSError, urllib.error.URLError):
            return False

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read()).get("value")
        except urllib.error.HTTPError as e:
            raise AssertionError("webdriver %s %s: %s" % (method, path, e.read()[:500]))

    def s(self, method, path, body=None):
        return self._call(method, "/session/%s%s" % (self.sid, path), body)

    def get(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        el = self.s("POST", "/element", {"using": "css selector", "value": css})
        return list(el.values())[0]

    def type(self, css, text):
        self.s("POST", "/element/%s/value" % self.find(css), {"text": text})

    def click(self, css):
        self.s("POST", "/element/%s/click" % self.find(css), {})

    def logs(self):
        return self.s("POST", "/se/log", {"type": "browser"}) or []

    def screenshot(self, name):
        os.makedirs(ART, exist_ok=True)
        png = base64.b64decode(self.s("GET", "/screenshot"))
        path = os.path.join(ART, "dashboard-%s.png" % name)
        with open(path, "wb") as f:
            f.write(png)
        T.check("screenshot %s saved" % name, len(png) > 1000, path)

    def wait(self, script, what, timeout=20):
        return harness.wait_for(lambda: self.js(script), timeout, what=what)

    def quit(self):
        try:
            self._call("DELETE", "/session/%s" % self.sid)
        except Exception:   # noqa: BLE001 - best effort at teardown
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def severe(logs, allow=()):
    return [e for e in logs if e.get("level") == "SEVERE" and
            not any(a in e.get("message", "") for a in allow)]


def visible(css):
    return "const e = document.querySelector(%s); return !!e && !e.hidden && " \
           "e.offsetParent !== null;" % json.dumps(css)


def test_browser(wd, cp):
    base = "http://127.0.0.1:%d" % cp
    wd.get(base + "/")
    wd.wait(visible("#login"), "login form")
    T.check("login form shown, data hidden", not wd.js(visible("#app")))
    T.eq("page load: no console errors", severe(wd.logs()), [])
    wd.screenshot("1-login")

    wd.type("#password", "not-the-password")
    wd.click("#login-form button")
    T.check("wrong password: refused",
            wd.wait("return document.getElementById('login-error').textContent", "refusal"))
    T.eq("wrong password: message", wd.js("return document.getElementById('login-error')"
                                          ".textContent"), "Wrong password.")
    T.check("wrong password: no data shown", not wd.js(visible("#app")))
    # the refused POST /login is the only error the browser may report
    T.eq("wrong password: no other console error", severe(wd.logs(), allow=("/login",)), [])
    wd.screenshot("2-wrong-password")

    wd.type("#password", tc.READ)
    wd.click("#login-form button")
    wd.wait(visible("#app"), "dashboard")
    wd.wait("return document.querySelectorAll('#domains tbody a').length >= 2", "domains")
    doms = wd.js("return [...document.querySelectorAll('#domains tbody tr')].map("
                 "r => [...r.cells].map(c => c.textContent))")
    names = [r[0] for r in doms]
    T.eq("domains scanned in the test are shown", sorted(names), ["example.com", "example.net"])
    row = dict((r[0], r) for r in doms).get("example.com", [])
    T.check("example.com: DMARC passes shown", len(row) > 2 and float(row[2]) >= 3, row)
    wd.wait("return document.querySelector('#totals tbody').rows.length > 0", "counters")
    scanned = wd.js("return [...document.querySelectorAll('#totals tr')].filter("
                    "r => r.cells[0].textContent == 'scanned').map(r => r.cells[1].textContent)")
    T.eq("counters: scanned", scanned, ["7"])
    wd.js("[...document.querySelectorAll('#domains tbody a')].find("
          "a => a.textContent == 'example.com').click()")
    wd.wait("return document.querySelectorAll('#sources tbody tr').length > 0", "sources")
    top = wd.js("return document.querySelector('#sources tbody tr').cells[0].textContent")
    T.eq("top failing source of example.com", top, "198.51.100")
    wd.wait("return document.querySelectorAll('#reports tbody tr').length == 7", "reports")
    T.eq("reports table: 7 days", wd.js("return document.querySelectorAll('#reports tbody tr')"
                                        ".length"), 7)
    time.sleep(0.5)
    T.eq("logged in: no console errors", severe(wd.logs()), [])
    origins = wd.js("return [...new Set(performance.getEntriesByType('resource').map("
                    "e => new URL(e.name).origin))]")
    T.eq("every resource from the controller itself", [o for o in origins if o != base], [])
    wd.screenshot("3-dashboard")


def main():
    if not shutil.which("chromedriver"):
        T.check("chromedriver installed (scripts/install-deps: chromium chromium-driver)", False)
        sys.exit(T.finish())
    with harness.RedisServer() as r:
        cp = harness.free_port()
        config = ("redis.servers = %s\ncontroller.password = \"%s\"\n"
                  "controller.enable_password = \"%s\"\n" % (r.address, tc.READ, tc.WRITE))
        with harness.Daemon(workers=2, config=config, zone=tc.ZONE,
                            listen=["127.0.0.1:%d" % harness.free_port(),
                                    "controller@127.0.0.1:%d" % cp]) as d:
            tc.T = T
            tc.populate(d, r)
            wd = WebDriver()
            try:
                T.run(test_browser, wd, cp)
            finally:
                wd.quit()
    sys.exit(T.finish())


if __name__ == "__main__":
    main()
