"""A fake browser for OAuth clients that open one ($BROWSER for mcp-remote, Inspector): GET the URL, follow
redirects, sign in with $AUTO_BROWSER_USER / $AUTO_BROWSER_PASSWORD when a password form appears, allow consent,
and stop at the first page without a form (the client's loopback callback). Stdlib only; each hop is logged to
$AUTO_BROWSER_LOG when set.
"""

from __future__ import annotations

import http.cookiejar
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.forms import next_form


def main(url: str) -> int:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar))
    user = os.environ.get("AUTO_BROWSER_USER", "alice")
    password = os.environ.get("AUTO_BROWSER_PASSWORD", "")
    log = os.environ.get("AUTO_BROWSER_LOG")
    request: urllib.request.Request = urllib.request.Request(url)
    signed_in = False
    for _ in range(20):
        with opener.open(request, timeout=20) as response:
            final = response.geturl()
            html = response.read().decode("utf-8", "replace")
        if log:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{final}\n")
        form = next_form(html)
        if form is None or (form.has_password and signed_in):
            return 0
        signed_in = signed_in or form.has_password
        data = urllib.parse.urlencode(form.filled(user, password, "allow")).encode()
        request = urllib.request.Request(urllib.parse.urljoin(final, form.action), data=data)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
