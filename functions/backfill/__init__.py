"""`python main.py backfill gs://BUCKET[/PREFIX]`: classify what a bucket already holds.

The bucket is listed page by page; each image object not yet classified by the target
model is named in a work message ({"uris": [...]}, many URIs per message) published to
the service's requests topic (in the cloud, or on the local stack's Pub/Sub emulator).
A checkpoint after every page lets an interrupted run continue where it stopped.

One job per module: target (the gs:// argument), listing (pages of image objects),
done (which objects already have a result), messages (URIs -> message bodies),
publishers (Pub/Sub), checkpoint, cost, progress, runner (the
loop), waiting (watching results land), cli (flags -> the pieces).
"""
