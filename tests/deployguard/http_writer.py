"""A client process for the multi-process test: logs in to the admin and adds groups in a loop.

Usage: python http_writer.py BASE_URL USERNAME PASSWORD STOP_FILE. Prints "ok <start>" when a
group was added (302), "refused <start>" on a 503, "status <code> <start>" otherwise.
"""

from __future__ import annotations

import http.cookiejar
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MAX_SECONDS = 600  # the stop file ends it; this only caps a test that hangs


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main(base: str, username: str, password: str, stop: str) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())

    def request(path: str, data: dict[str, str] | None = None) -> int:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with opener.open(base + path, body, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def csrf() -> str:
        return next(cookie.value for cookie in jar if cookie.name == "csrftoken")

    request("/admin/login/")
    status = request(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf()},
    )
    if status != 302:
        print(f"login failed {status}", flush=True)
        return
    deadline, i = time.monotonic() + MAX_SECONDS, 0
    while not os.path.exists(stop) and time.monotonic() < deadline:
        i += 1
        started = time.time()
        status = request("/admin/auth/group/add/", {"name": f"http-{i}", "csrfmiddlewaretoken": csrf()})
        outcome = {302: "ok", 503: "refused"}.get(status, f"status-{status}")
        print(f"{outcome} {started:.6f}", flush=True)
        time.sleep(0.02)


if __name__ == "__main__":
    main(*sys.argv[1:5])
