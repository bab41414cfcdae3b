"""Reading QR codes back in tests, with zxing-cpp: a decoder independent of the ``qrcode`` library that drew them."""

from __future__ import annotations


def decode_qr(png_bytes: bytes) -> list[str]:
    """The texts of the QR codes in a PNG (a screenshot, a served image), read by zxing-cpp from its grey levels."""
    import png
    import zxingcpp

    width, height, rows, info = png.Reader(bytes=png_bytes).asDirect()
    planes, scale = info["planes"], 255 // ((1 << info["bitdepth"]) - 1)
    grey = bytearray()
    for row in rows:
        grey += bytes(value * scale for value in list(row)[::planes])  # the first channel is enough for black on white
    found = zxingcpp.read_barcodes(memoryview(bytes(grey)).cast("B", (height, width)))
    return [barcode.text for barcode in found if barcode.format == zxingcpp.BarcodeFormat.QRCode]
