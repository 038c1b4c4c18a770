"""Pure core of ingest: frame parsing (`parse`), dedupe and replay-gap judgement (`dedupe`)."""

# The names other areas' tests import from the core as a whole.
from hlstream.services.ingest.core.dedupe import Deduper as Deduper
from hlstream.services.ingest.core.parse import DATA_CHANNELS as DATA_CHANNELS
from hlstream.services.ingest.core.parse import FrameKind as FrameKind
from hlstream.services.ingest.core.parse import parse_frame as parse_frame
