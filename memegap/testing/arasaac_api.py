"""A loopback ARASAAC: GET /v1/pictograms/all/<locale> (JSON records) and
GET /pictograms/<id>/<id>_<resolution>.png (the PNG bytes given for that id)."""

from __future__ import annotations

import json
import re

from memegap.testing.server import LoopbackServer, QuietHandler


def arasaac_record(pictogram_id: int, keyword: str, tags: list[str], categories: list[str]) -> dict:
    """A record shaped like the API's (the fields a client reads, and a few it does not)."""
    return {
        "_id": pictogram_id,
        "keywords": [{"keyword": keyword, "type": 2, "hasLocution": True}],
        "tags": tags,
        "categories": categories,
        "schematic": False,
        "sex": False,
        "violence": False,
        "aac": False,
        "skin": False,
        "hair": False,
        "downloads": 0,
        "created": "2017-01-01T00:00:00.000Z",
        "lastUpdated": "2020-01-01T00:00:00.000Z",
    }


class ArasaacApp:
    def __init__(self, records: dict[str, list], pngs: dict[int, bytes]) -> None:
        self.records, self.pngs = records, pngs
        self.png_requests = 0


class ArasaacHandler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        app: ArasaacApp = self.server.app
        listing = re.fullmatch(r"/v1/pictograms/all/([a-z]{2})", self.path)
        picture = re.fullmatch(r"/pictograms/(\d+)/(\d+)_(\d+)\.png", self.path)
        if listing and listing.group(1) in app.records:
            self.send_json(200, json.dumps(app.records[listing.group(1)]).encode())
        elif picture and int(picture.group(1)) in app.pngs:
            app.png_requests += 1
            body = app.pngs[int(picture.group(1))]
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


def arasaac_api(records: dict[str, list], pngs: dict[int, bytes]) -> LoopbackServer:
    return LoopbackServer(ArasaacHandler, ArasaacApp(records, pngs))
