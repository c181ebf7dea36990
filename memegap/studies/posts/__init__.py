"""The posts and influencers study (thesis 001): caption models, early and late fusion, influencer categories; `memegap-posts`."""
