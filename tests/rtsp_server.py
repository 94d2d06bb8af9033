"""A local RTSP server for tests/test_live_sources.py: GStreamer's RTSP server, run by the system Python (its GObject
bindings are Debian packages, not pip ones).

usage: python3 rtsp_server.py PORT FRAMES -- serves rtsp://127.0.0.1:PORT/test, FRAMES frames of a moving test
pattern (160 x 120, 20 fps, JPEG over RTP); prints "ready" once it listens.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, frames = sys.argv[1], int(sys.argv[2])
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( videotestsrc pattern=ball is-live=true num-buffers={frames} "
                   "! video/x-raw,format=I420,width=160,height=120,framerate=20/1 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
