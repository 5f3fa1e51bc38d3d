"""The admin dashboard at ``/dashboard/``: server-rendered pages over the same operations.

Every page does what it does through :class:`~controlplane.dashboard.gateway.Gateway`, which runs
the very ``/v1`` operations the API serves (``controlplane/api/``) in-process, for the signed-in
admin: one set of permission checks, one validation, one audit trail. A page holds no query of
its own into tenant data: the overview's counts too are an operation's (``GET /v1/stats``).

Map:

- ``gateway.py``   — run a ``/v1`` operation for the signed-in admin (or a member acting on a
  project's data in test or live mode: ``controlplane/auth/member_principal.py``).
- ``frame.py``     — what every page shows around its content: who is signed in, the
  organization and project switchers, the test/live toggle, what the role may do.
- ``rendering.py`` — Jinja2 templates, the Content-Security-Policy and the error pages.
- ``answers.py``   — middleware: an answer no page gave (no such page, a body too large, a bug)
  is an error page too, and every answer under ``/dashboard/`` has the security headers.
- ``forms.py``     — reading a posted form into the JSON an operation takes, and the
  Idempotency-Key a form carries from the moment it is drawn.
- ``charts.py``    — bar charts drawn as SVG on the server (no JavaScript, no CDN).
- ``sent.py``      — the notice after a change that sent pushes (how many, the API's warnings).
- ``pages/``       — one module per area (sign-in, overview, devices, pushes …), each a list of
  routes; ``routes.py`` mounts them with the static assets.
- ``templates/``, ``static/`` — the HTML, one stylesheet and one small script (live push status
  via ``EventSource``, copy buttons, the invitation link's token).
"""
